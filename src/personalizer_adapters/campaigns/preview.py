"""`personalizer campaigns preview FILE --as ID`: which banner a shopper would get, and why, before going live.

The campaigns are tried in the edge's order with the edge's own code (``banners.choose`` on each campaign alone,
``Target.refusal`` for the targeting), against the shopper's record in a build (``kv.json``) and the request
facts given on the command line (country, region, time, device, landing parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalizer import codec, keys
from personalizer.banners import BannerChoice, Tried, trace
from personalizer.errors import DecodeError
from personalizer.records import (
    EMPTY_INVENTORY,
    BannerRule,
    BannerSet,
    Context,
    Inventory,
    Manifest,
    Profile,
    Settings,
)
from personalizer.render import _filled, safe_url
from personalizer.service import zoneinfo_local
from personalizer_adapters.kv.plan import read_bulk


@dataclass(frozen=True)
class Preview:
    winner: BannerChoice | None
    trace: list[Tried]

    def text(self) -> str:
        lines = []
        for t in self.trace:
            lines.append(f"  {'MATCH' if t.matched else 'no   '} {t.campaign} (priority {t.priority}): {t.why}")
        if self.winner is None:
            lines.append("the winner: none (the default tier's banner is shown: the highest-priority generic "
                         "campaign without targeting, if any)")
        else:
            v, fill = self.winner.variant, self.winner.fill
            lines += [f"the winner: {self.winner.rule.id}, variant {v.id} (tier {self.winner.tier})",
                      f"  title: {_filled(v.title, fill)}", f"  body:  {_filled(v.body, fill)}",
                      f"  cta:   {_filled(v.cta, fill)} -> {safe_url(v.url)}", f"  image: {safe_url(v.image)}"]
        return "campaigns tried, in the edge's order:\n" + "\n".join(lines)


def load_person(build: Path, person: str | None) -> tuple[Profile | None, Manifest | None, Inventory]:
    """The shopper's profile (a customer's, else a visitor's), the manifest and the inventory of a build."""
    wanted = {keys.MANIFEST, keys.INVENTORY}
    if person:
        wanted |= {keys.profile(person), keys.visitor(person)}
    found = {k: v for k, v in read_bulk(build / "kv.json") if k in wanted}

    def record(key: str, kind: str) -> Any:
        try:
            return codec.decode(found[key], expect=kind) if key in found else None
        except DecodeError:
            return None

    manifest = record(keys.MANIFEST, "manifest")
    inventory = record(keys.INVENTORY, "inventory")
    env = (record(keys.profile(person), "profile") or record(keys.visitor(person), "profile")) if person else None
    return (Profile.parse(env) if env else None, Manifest.parse(manifest) if manifest else None,
            Inventory.parse(inventory) if inventory else EMPTY_INVENTORY)


def preview(rules: list[dict[str, Any]], profile: Profile | None, manifest: Manifest | None, inventory: Inventory,
            context: Context, *, consented: bool = True, bucket_key: str | None = None) -> Preview:
    banner_set = BannerSet(tuple(BannerRule.parse(r) for r in rules))
    settings = manifest.settings if manifest else Settings()
    segment = next((s for s in profile.segments if manifest is None or s in manifest.segments), None) \
        if profile else None
    winner, tried = trace(banner_set, profile, segment, consented=consented, inventory=inventory,
                          settings=settings, bucket_key=bucket_key, context=context._replace(local=zoneinfo_local))
    return Preview(winner, tried)
