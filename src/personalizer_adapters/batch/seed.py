"""`personalizer seed`: generate the demo shop, build its records, write them for local KV and the bundle."""

from __future__ import annotations

import base64
import json
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from personalizer_adapters.store import open_stores
from personalizer_adapters.store.base import SnapshotEvent
from personalizer_adapters.store.profiles import ProfileStore

from .build import Built, build
from .model import order_keys, quantities
from .seedgen import Shop, generate


def load_config(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def campaigns_file(config_path: Path, cfg: dict[str, Any]) -> Path:
    """The demo's campaigns file: the config's ``campaigns``, relative to the config's own directory."""
    return config_path.resolve().parent / str(cfg.get("campaigns", "campaigns.toml"))


def build_seed(config_path: Path, erased: set[str] | frozenset[str] = frozenset()) -> tuple[Shop, Built]:
    """Generate and build the seed shop, leaving out every event of the ``erased`` people (tombstones), with the
    campaigns of its campaigns file (kv-seed/campaigns.toml)."""
    from personalizer_adapters.campaigns import load_campaigns

    cfg = load_config(config_path)
    shop = generate(cfg).without(erased)
    return shop, build(shop, cfg, campaigns=load_campaigns(campaigns_file(config_path, cfg)))


def bulk_json(records: Mapping[str, bytes]) -> str:
    """Records in the format of ``wrangler kv bulk put`` (base64 values), sorted for stable output."""
    return "".join(bulk_json_lines(records))


def bulk_json_lines(records: Mapping[str, bytes]) -> Iterator[str]:
    """The same JSON array, one pair per line, produced lazily: a million records never become one string."""
    from json.encoder import encode_basestring_ascii as quoted  # json.dumps' own escaping of a string

    yield "["
    for n, key in enumerate(sorted(records)):  # json.dumps of {"key", "value", "base64"}, compact, made directly
        pair = f'{{"key":{quoted(key)},"value":"{base64.b64encode(records[key]).decode()}","base64":true}}'
        yield ("\n" if n == 0 else ",\n") + pair
    yield "\n]\n"


def write_origin(shop: Shop, built: Built, directory: Path, erased: frozenset[str] = frozenset(),
                 database: str | None = None) -> None:
    """The origin's data: model artifacts (in ``directory``, and in the store), and a profile store with every
    shopper (pushed or not) but the erased, whose ids go into the store's tombstones so the origin refuses them
    too: the SQLite file beside the artifacts, or the database at ``database``."""
    artifacts = built.model.save(directory)
    ev = shop.events
    ids = [s["id"] for s in shop.shoppers]
    products = [p["id"] for p in shop.products]
    shared = [k for k in built.records if k.startswith(f"pz1:g:{built.generation}:")]  # keys: values read lazily
    store = open_stores(directory, database).profiles
    store.add_tombstones(erased)
    erased = erased | store.tombstones()
    store.replace_all(
        ((s["id"], s["loyalty"]) for s in shop.shoppers if s["id"] not in erased),
        _event_rows(ev, ids, products),
        ((k, built.records[k]) for k in shared), built.generation, artifacts)


def _event_rows(ev: Any, ids: list[str], products: list[str], chunk: int = 1 << 20) -> Iterator[SnapshotEvent]:
    """The events as the store's rows, a chunk at a time (20M events as Python lists at once: gigabytes)."""
    qty, order = quantities(ev), order_keys(ev)
    for lo in range(0, len(ev), chunk):
        part = ev[lo:lo + chunk]
        yield from zip([ids[i] for i in part["shopper"].tolist()], [products[i] for i in part["product"].tolist()],
                       part["kind"].tolist(), part["ts"].tolist(), qty[lo:lo + chunk].tolist(),
                       order[lo:lo + chunk].tolist(), strict=True)


def erased_in(out_dir: Path, database: str | None = None) -> set[str]:
    """Tombstoned people of the profile store (privacy erasures): the database's, else the output directory's
    if it has one."""
    if database:
        return open_stores(out_dir / "origin", database).profiles.tombstones()
    store = out_dir / "origin" / "store.sqlite"
    return ProfileStore(store).tombstones() if store.exists() else set()


def replace_file(path: Path, chunks: Iterable[str]) -> None:
    """Write ``path`` from text ``chunks`` through a ``.tmp`` beside it, then rename: a reader sees the old file
    or the new one, never half of either (a build's outputs, and the erase and campaigns rewrites of them)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        f.writelines(chunks)
    tmp.replace(path)


ALONGSIDE_MIN = 1_000_000  # events from which the origin's store is written in a child beside the KV files


def write_outputs(shop: Shop, built: Built, out_dir: Path, erased: frozenset[str] = frozenset(),
                  database: str | None = None, alongside_min: int = ALONGSIDE_MIN) -> None:
    """A build's outputs: kv.json (wrangler bulk format), generation.txt, manifest.json (key -> content
    hash), and origin/ (model artifacts, and the profile store unless ``database`` keeps it). Each file is
    replaced atomically. From ``alongside_min`` events, the origin's store is written by a forked child while
    this process writes the KV files (two cores: about the time of the longer of the two)."""
    from personalizer_adapters.engine.parallel import alongside
    from personalizer_adapters.kv.plan import digest

    out_dir.mkdir(parents=True, exist_ok=True)
    with alongside(lambda: write_origin(shop, built, out_dir / "origin", erased, database),
                   parallel=len(shop.events) >= alongside_min):
        for name, chunks in (("kv.json", bulk_json_lines(built.records)),
                             ("manifest.json", [json.dumps({"generation": built.generation, "records": {
                                 k: digest(built.records[k]) for k in sorted(built.records)}}, indent=0)]),
                             ("profiles.digests.json", [json.dumps(built.digests, sort_keys=True)]),
                             ("generation.txt", [built.generation + "\n"])):
            replace_file(out_dir / name, chunks)


def previous_profiles(out_dir: Path) -> dict[str, tuple[str, bytes]] | None:
    """The last build's profile records and event digests in ``out_dir``, for reuse; ``None`` if absent."""
    digests_path, kv_path = out_dir / "profiles.digests.json", out_dir / "kv.json"
    if not (digests_path.exists() and kv_path.exists()):
        return None
    from personalizer_adapters.kv.plan import read_bulk

    digests = json.loads(digests_path.read_text())
    out = {}
    for key, value in read_bulk(kv_path):
        if key.startswith("pz1:p:") and key[len("pz1:p:"):] in digests:
            out[key[len("pz1:p:"):]] = (digests[key[len("pz1:p:"):]], value)
    return out


def write_inputs(shop: Shop, directory: Path, erased: frozenset[str] = frozenset(), events: bool = True) -> None:
    """The shop as `personalizer build` inputs (CSV): catalog, events (unless not ``events``), shoppers (the
    erased left out: their events are already gone from ``shop``). A build writes its catalog and shoppers as
    read (for the demo shop on your data: ``make dev DATA=...``)."""
    import csv

    from .seedgen import EVENT_KINDS

    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "catalog.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "category", "title", "price", "url", "image", "stock", "currency"])
        for p in shop.products:
            w.writerow([p["id"], p["category"], p["title"], f"{p['price'] // 100}.{p['price'] % 100:02d}", p["url"],
                        p["image"], p["stock"], p["currency"]])
    ids = [s["id"] for s in shop.shoppers]
    products = [p["id"] for p in shop.products]
    if events:
        with (directory / "events.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["shopper", "product", "kind", "ts"])
            ev = shop.events
            w.writerows(zip([ids[i] for i in ev["shopper"].tolist()], [products[i] for i in ev["product"].tolist()],
                            [EVENT_KINDS[k] for k in ev["kind"].tolist()], ev["ts"].tolist(), strict=True))
    with (directory / "shoppers.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "loyalty"])
        w.writerows((s["id"], s["loyalty"]) for s in shop.shoppers if s["id"] not in erased)


def simulate_experiment(config: dict[str, Any], generation: str, origin_dir: Path, database: str | None = None) -> int:
    """Beacon events of banner exposures and clicks with known click-through rates (``[experiment]``), into
    the origin's event log through its own ingest checks. Idempotent (fixed ids): reseeding adds nothing twice
    and leaves real events alone. Returns the number of events stored now."""
    import numpy as np

    from personalizer.events import message

    exp = config.get("experiment")
    if not exp:
        return 0
    rng = np.random.default_rng(int(config["seed"]) + 7)
    more = np.random.default_rng(int(config["seed"]) + 8)  # purchases and the holdout: the clicks' draws as they were
    start = int(config["now"]) - int(exp["days"]) * 86400
    beacons = []
    for r, (rule, ctrs) in enumerate(sorted(exp["ctr"].items())):
        variants = sorted(ctrs)
        for i in range(int(exp["exposures"])):
            variant = variants[i % len(variants)]
            ts = start + int(rng.integers(0, int(exp["days"]) * 86400))
            events = [{"id": "x", "type": "impression", "ts": ts, "slot": "hero", "tier": "user",
                       "generation": generation, "banner": rule, "variant": variant}]
            if rng.random() < float(ctrs[variant]):
                events.append({"id": "c", "type": "click", "ts": ts + 20, "slot": "hero", "item": "banner",
                               "position": 0})
                if more.random() < float(exp.get("buy_after_click", 0)):  # revenue and conversion to attribute
                    events.append(_sim_purchase(f"sim-{r}-{i:05d}", ts + 25, more))
            beacons.append(message(None, f"sim-{r}-{i:05d}", [], events, ts + 30))
    beacons += _simulate_holdout(exp.get("holdout") or {}, generation, start, int(exp["days"]), more)
    return open_stores(origin_dir, database).log.ingest(beacons, lambda people: set()).stored


SIM_PRICES = (("p00001", "24.00"), ("p00002", "12.50"), ("p00003", "39.90"))


def _sim_purchase(order: str, ts: int, rng: Any) -> dict[str, Any]:
    item, price = SIM_PRICES[int(rng.integers(0, len(SIM_PRICES)))]
    return {"id": "b", "type": "purchase", "ts": ts, "order": order,
            "items": [{"item": item, "quantity": int(rng.integers(1, 3)), "price": price}]}


def _simulate_holdout(cfg: dict[str, Any], generation: str, start: int, days: int, rng: Any) -> list[dict[str, Any]]:
    """Visitors who see the home carousel: a share of them in the global holdout (served popular, marked), the
    rest personalized, each arm with its own click, add-to-cart and purchase rates (``[experiment.holdout]``)."""
    from personalizer.events import message

    out = []
    for i in range(int(cfg.get("visitors", 0))):
        held = rng.random() < float(cfg["share"])
        arm = cfg["holdout" if held else "personalized"]
        ts = start + int(rng.integers(0, days * 86400))
        shown = {"id": "i", "type": "impression", "ts": ts, "slot": "home", "tier": "popular" if held else "user",
                 "generation": generation, "items": ["p00001", "p00002"]}
        events = [{**shown, "holdout": True} if held else shown]
        if rng.random() < float(arm["ctr"]):
            events.append({"id": "c", "type": "click", "ts": ts + 10, "slot": "home", "item": "p00001",
                           "position": 0})
        if rng.random() < float(arm["cart"]):
            events.append({"id": "a", "type": "add_to_cart", "ts": ts + 15, "item": "p00001", "quantity": 1})
            if rng.random() < float(arm["buy_after_cart"]):
                events.append(_sim_purchase(f"simh-{i:05d}", ts + 40, rng))
        out.append(message(None, f"simh-{i:05d}", [], events, ts + 60))
    return out


def write_seed(config_path: Path, out_dir: Path, erased: frozenset[str] = frozenset(),
               database: str | None = None) -> Built:
    """The demo shop's build in ``out_dir`` (its origin store in ``database`` if given), leaving out the
    ``erased`` (tombstones) and anyone erased in the store already there."""
    erased = erased | erased_in(out_dir, database)
    shop, built = build_seed(config_path, erased)
    write_outputs(shop, built, out_dir, erased, database)
    write_inputs(shop, out_dir / "inputs", erased)
    simulate_experiment(load_config(config_path), built.generation, out_dir / "origin", database)
    return built
