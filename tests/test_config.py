"""config: the worker's vars parsed into a frozen Config, bad values named."""

import dataclasses

import pytest

from personalizer import Config, parse_config


def test_parse_config_reads_vars_and_key_list() -> None:
    """Comma-separated keys keep their order (first signs); numbers parse; defaults fill the rest."""
    cfg = parse_config({"PZ_SIGNING_KEYS": "a" * 16 + ", " + "b" * 16, "ORIGIN_TIMEOUT_MS": "200",
                        "CONSENT_DEFAULT": "denied"})
    assert cfg.signing_keys == (b"a" * 16, b"b" * 16)
    assert cfg.origin_timeout_ms == 200 and cfg.consent_default == "denied"
    assert cfg.uid_max_age_s == Config().uid_max_age_s
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.consent_default = "granted"  # type: ignore[misc]


@pytest.mark.parametrize("env,name", [
    pytest.param({"PZ_SIGNING_KEYS": "short"}, "PZ_SIGNING_KEYS", id="short-key"),
    pytest.param({"CONSENT_DEFAULT": "maybe"}, "CONSENT_DEFAULT", id="bad-consent"),
    pytest.param({"ORIGIN_TIMEOUT_MS": "fast"}, "ORIGIN_TIMEOUT_MS", id="not-a-number"),
    pytest.param({"BROWSER_MAX_AGE_S": "-1"}, "BROWSER_MAX_AGE_S", id="out-of-range"),
    pytest.param({"MANIFEST_TTL_S": "١٥"}, "MANIFEST_TTL_S", id="arabic-indic-digits"),
    pytest.param({"MANIFEST_TTL_S": "1²"}, "MANIFEST_TTL_S", id="superscript"),
])
def test_parse_config_names_the_bad_var(env: dict[str, str], name: str) -> None:
    """A bad value raises ValueError naming the variable."""
    with pytest.raises(ValueError, match=name):
        parse_config(env)


def test_vars_lists_every_variable_parse_config_reads() -> None:
    """The worker copies exactly VARS from its env, so every name parse_config looks up must be in it."""
    import inspect
    import re

    from personalizer import config

    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', inspect.getsource(config.parse_config)))
    assert read == set(config.VARS)
