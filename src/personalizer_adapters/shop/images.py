"""The demo shop's pictures, drawn as SVG from what it knows: no image files, no external host.

A product's picture is a landscape in its category's colour with the product's name on a band; a banner's is a
wider landscape drawn from its file name. The same input always draws the same picture (a hash, not a random
generator), so a page looks the same on every load and in the README's screenshots.
"""

from __future__ import annotations

import hashlib
from html import escape


def _numbers(key: str) -> list[int]:
    """32 bytes that depend only on ``key``."""
    return list(hashlib.sha256(key.encode()).digest())


def _ridge(width: int, base: int, peaks: list[int], height: int) -> str:
    """A closed mountain path along the bottom of a ``width`` wide picture: one peak per number."""
    step = width / (len(peaks) - 1)
    points = " ".join(f"L{i * step:.0f},{base - (p % height)}" for i, p in enumerate(peaks))
    return f"M0,{base + 400} {points} L{width},{base + 400} Z"


def _scene(key: str, hue: int, width: int, height: int) -> str:
    n = _numbers(key)
    sun_x, sun_y = 60 + n[0] * (width - 120) // 255, 40 + n[1] % (height // 3)
    return (
        f'<defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="hsl({hue},55%,82%)"/>'
        f'<stop offset="1" stop-color="hsl({(hue + 30) % 360},60%,94%)"/>'
        f"</linearGradient></defs>"
        f'<rect width="{width}" height="{height}" fill="url(#sky)"/>'
        f'<circle cx="{sun_x}" cy="{sun_y}" r="{height // 9}" fill="hsl({(hue + 180) % 360},80%,88%)"/>'
        f'<path d="{_ridge(width, height * 2 // 3, n[2:9], height // 3)}" fill="hsl({hue},35%,55%)"/>'
        f'<path d="{_ridge(width, height * 5 // 6, n[9:18], height // 4)}" fill="hsl({hue},40%,32%)"/>')


def hue_of(category: str) -> int:
    """A category's colour: the same hue for every product of the category."""
    n = _numbers("category:" + category)
    return (n[0] * 256 + n[1]) % 360


def product_svg(pid: str, title: str, category: str) -> str:
    """A square picture for one product: its category's landscape (its hue give or take 15 degrees), its name
    on a band at the bottom."""
    hue = (hue_of(category) + _numbers(pid)[31] % 31 - 15) % 360
    words = title.split()
    # The product's kind (the title's last two words) is what tells two pictures apart at a glance.
    name = " ".join(words[-2:]) if len(words) > 2 else title
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 400" width="400" height="400" role="img"'
        f' aria-label="{escape(title)}">{_scene(pid, hue, 400, 400)}'
        f'<rect y="318" width="400" height="82" fill="hsla({hue},45%,18%,.82)"/>'
        f'<text x="200" y="356" text-anchor="middle" font-family="system-ui,sans-serif" font-size="30"'
        f' font-weight="600" fill="#fff" textLength="{min(360, 18 * len(name))}" lengthAdjust="spacingAndGlyphs">'
        f"{escape(name)}</text>"
        f'<text x="200" y="386" text-anchor="middle" font-family="system-ui,sans-serif" font-size="18"'
        f' fill="hsl({hue},60%,88%)">{escape(category.replace("-", " "))}</text></svg>')


def banner_svg(name: str) -> str:
    """A wide picture for a banner, drawn from its file name (``cart-a``, ``seg-tents``)."""
    hue = _numbers("banner:" + name)[0] * 360 // 256
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1200 360" width="1200" height="360" role="img"'
            f' aria-label="">{_scene(name, hue, 1200, 360)}</svg>')
