"""A shop of one's own: a small coffee shop's build and campaigns, pushed to local KV, answer only with that
shop's products and copy, in every tier the edge can serve, the default tier included."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from personalizer import keys
from personalizer_adapters.batch.seed import bulk_json
from personalizer_adapters.kv.plan import read_bulk
from tests.conftest import TEST_KEY, uid_cookie
from tests.runtime.harness import ROOT, edge_runtime
from tests.test_push_local import cli

pytestmark = pytest.mark.edge

PRODUCTS = {  # id: (category, title)
    "k-espresso": ("beans", "Kontor Espresso Roast 1 kg"),
    "k-filter": ("beans", "Kontor Filter Roast 500 g"),
    "k-decaf": ("beans", "Kontor Decaf Roast 500 g"),
    "k-v60": ("brewing", "Kontor Pour-Over Dripper"),
    "k-grinder": ("brewing", "Kontor Hand Grinder"),
}
CAMPAIGNS = """
[[campaigns]]
id = "kontor-cart"
priority = 50
kind = "cart_reminder"
  [[campaigns.variants]]
  id = "kontor-cart-a"
  title = "Still thinking about {item}?"
  body = "Roasted on Monday, at your door on Wednesday."
  cta = "Back to the basket"
  url = "/basket"
  image = "https://img.kaffee-kontor.test/cart.jpg"

[[campaigns]]
id = "kontor-welcome"
priority = 0
kind = "generic"
  [[campaigns.variants]]
  id = "kontor-welcome-a"
  title = "Fresh from the Kontor roastery"
  body = "Small batches, roasted every week."
  cta = "Taste them"
  url = "/roasts"
  image = "https://img.kaffee-kontor.test/welcome.jpg"
"""
COPY = {"Fresh from the Kontor roastery"}


def write_shop(directory: Path) -> tuple[Path, Path, Path]:
    catalog = directory / "catalog.csv"
    catalog.write_text("id,category,title,price,url,image\n" + "".join(
        f"{pid},{cat},{title},12.50,/p/{pid},https://img.kaffee-kontor.test/{pid}.jpg\n"
        for pid, (cat, title) in PRODUCTS.items()))
    ids = list(PRODUCTS)
    events = directory / "events.csv"  # twelve regulars: each views three products, buys one, carts another
    events.write_text("shopper,product,kind,ts\n" + "".join(
        f"s{s:02d},{ids[(s + j) % 5]},view,{1_790_000_000 + s * 100 + j}\n" for s in range(12) for j in range(3))
        + "".join(f"s{s:02d},{ids[s % 5]},purchase,{1_790_000_050 + s * 100}\n" for s in range(12))
        + "".join(f"s{s:02d},{ids[(s + 2) % 5]},add_to_cart,{1_790_000_060 + s * 100}\n" for s in range(12)))
    campaigns = directory / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    return catalog, events, campaigns


def only_this_shop(answer: httpx.Response) -> set[str]:
    """The tiers of a /v1/page answer, once every card and banner in it is checked to be the shop's own."""
    assert answer.status_code == 200, answer.text
    assert "/img/banners/" not in answer.text and "autumn" not in answer.text.lower()
    tiers = set()
    for slot, fragment in answer.json()["fragments"].items():
        tiers.add(f"{slot}={fragment['tier']}")
        if slot == "hero":
            banner = fragment["banner"]
            assert banner is not None and banner["id"] in ("kontor-cart", "kontor-welcome"), banner
            assert banner["image"].startswith("https://img.kaffee-kontor.test/")
            assert banner["title"] in COPY | {f"Still thinking about {t}?" for _, t in PRODUCTS.values()}, banner
        else:
            for card in fragment["items"]:
                assert card["id"] in PRODUCTS and card["title"] == PRODUCTS[card["id"]][1], card
    return tiers


def test_a_coffee_shop_is_served_only_its_own_products_and_copy(tmp_path: Path) -> None:
    catalog, events, campaigns = write_shop(tmp_path)
    build, kv, state = tmp_path / "build", tmp_path / "kv", tmp_path / "state"
    built = cli("build", "--catalog", str(catalog), "--events", str(events), "--campaigns", str(campaigns),
                "--config", str(ROOT / "kv-seed" / "seed.toml"), "--out", str(build), "--tombstones", "/dev/null")
    assert built.returncode == 0, built.stderr
    pushed = cli("push", "--build", str(build), "--target", "local", "--persist", str(kv), "--state-dir", str(state))
    assert pushed.returncode == 0, pushed.stderr
    page = "/v1/page?slots=hero,home,item,cart,recent,again&item=k-v60&limit=12"
    tiers: set[str] = set()
    with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as edge:
        for who in ({"cookie": uid_cookie("s03")}, {"cookie": uid_cookie("s07")},  # regulars
                    {"cookie": uid_cookie("newcomer")},  # signed in, no history: the origin knows nobody
                    {}, {"cookie": "pz_consent=denied"}):
            tiers |= only_this_shop(edge.get(page, headers=who))
    assert {"home=user", "hero=user", "home=popular"} <= tiers, tiers

    # The shop's default tier alone (no manifest: what an isolate has to go on when the generation cannot be read)
    alone = tmp_path / "default.json"
    record = dict(read_bulk(build / "kv.json"))[keys.DEFAULT]
    alone.write_text(bulk_json({keys.DEFAULT: record}))
    with edge_runtime(tmp_path / "bare", seed=alone, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as edge:
        tiers = only_this_shop(edge.get(page, headers={"cookie": uid_cookie("s03")}))
    assert tiers == {"hero=default", "home=default", "item=default", "cart=default", "recent=default",
                     "again=popular"}, tiers
