"""The shop's campaigns: a TOML file its marketers own, checked and compiled into the banner record."""

from .file import CampaignsError, Problem, check_text, load_campaigns

__all__ = ["CampaignsError", "Problem", "check_text", "load_campaigns"]
