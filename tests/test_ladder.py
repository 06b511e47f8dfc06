"""ladder: tier order, render-time rules, category cap, backfill."""

from personalizer.ladder import assemble, interleave
from personalizer.records import EMPTY_INVENTORY, Card, Inventory


def card(i: int, cat: str = "c", price: int = 1000) -> Card:
    return Card(f"p{i}", f"T{i}", f"/p/{i}", f"https://i/{i}.jpg", price, "EUR", cat)


def test_assemble_reports_the_best_tier_that_contributed() -> None:
    """The user list answers; when it is empty the next tier does."""
    sources = [("user", [card(1)]), ("segment", [card(2)]), ("popular", [card(3)])]
    assert assemble("home", sources, limit=1, exclude=set(), inventory=EMPTY_INVENTORY, category_cap=9).tier == "user"
    sources[0] = ("user", [])
    c = assemble("home", sources, limit=2, exclude=set(), inventory=EMPTY_INVENTORY, category_cap=9)
    assert c.tier == "segment" and [x.id for x in c.cards] == ["p2", "p3"]


def test_assemble_drops_excluded_out_of_stock_and_duplicates_and_backfills() -> None:
    """Bought/in-cart/shown ids and out-of-stock items are dropped; lower tiers fill the gap."""
    inv = Inventory(frozenset({"p2"}), {"p3": 500})
    sources = [("user", [card(1), card(2), card(3), card(1)]), ("popular", [card(4), card(5)])]
    c = assemble("home", sources, limit=3, exclude={"p1"}, inventory=inv, category_cap=9)
    assert [x.id for x in c.cards] == ["p3", "p4", "p5"]
    assert c.cards[0].price == 500  # the inventory's price overrides the card's


def test_assemble_caps_categories_but_never_leaves_the_carousel_short() -> None:
    """At most N per category while other candidates exist; the cap relaxes only to fill the limit."""
    sources = [("user", [card(1, "a"), card(2, "a"), card(3, "a"), card(4, "b")])]
    c = assemble("home", sources, limit=3, exclude=set(), inventory=EMPTY_INVENTORY, category_cap=2)
    assert [x.id for x in c.cards] == ["p1", "p2", "p4"]
    c = assemble("home", sources, limit=4, exclude=set(), inventory=EMPTY_INVENTORY, category_cap=2)
    assert [x.id for x in c.cards] == ["p1", "p2", "p4", "p3"]


def test_interleave_round_robins_without_repeats() -> None:
    """Cart complements take one from each cart item's list in turn."""
    out = interleave([[card(1), card(2)], [card(3), card(1), card(4)]])
    assert [x.id for x in out] == ["p1", "p3", "p2", "p4"]
