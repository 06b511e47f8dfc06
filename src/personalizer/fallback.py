"""What the worker serves when it has nothing of the shop's: no product, no copy, of any shop.

The shop's own ``default`` tier (its generic campaign and popular items) is a record its build pushes
(``pz1:default``), which the isolate keeps once read, so it is served through a KV outage too. Only an isolate
that has never read it and cannot (KV down from its first request) falls back to this: empty carousels and no
banner, which the page shows as nothing (the placeholders keep the shop's own content).
"""

from .banners import BannerChoice
from .records import BannerRule, Card, Variant

GENERATION = "default"

CARDS: tuple[Card, ...] = ()

_NOTHING = Variant("", 0, "", "", "", "", "")
# The hero with no banner: ``render`` writes no section for it (HTML) and ``"banner": null`` (JSON).
NO_BANNER = BannerChoice("none", BannerRule("", "generic", 0, "", (_NOTHING,)), _NOTHING)
