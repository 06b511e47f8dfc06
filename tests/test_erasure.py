"""An erasure lasts: after `personalizer erase`, no push, build, seed or origin brings the person back."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from personalizer import codec, keys, session
from personalizer_adapters.batch.build import Built
from personalizer_adapters.origin.app import Origin
from tests.conftest import TEST_KEY, uid_cookie
from tests.runtime.harness import edge_runtime, local_kv_get
from tests.test_push_local import cli

pytestmark = pytest.mark.edge
PERSON = "c00002"
MENTION = re.compile(rb"c00002(?![0-9])")


def mentions(directory: Path) -> list[str]:
    """Every file (and SQLite table) under ``directory`` that still names the person."""
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if path.suffix == ".sqlite":
            with sqlite3.connect(path) as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                for table, column in (("shoppers", "id"), ("events", "shopper"), ("beacon_events", "person")):
                    query = f"SELECT count(*) FROM {table} WHERE {column} = ?"
                    if table in tables and db.execute(query, (PERSON,)).fetchone()[0]:
                        found.append(f"{path}:{table}")
        elif MENTION.search(path.read_bytes()):
            found.append(str(path))
    return found


def test_erasure_survives_push_build_and_seed(small_built: Built, small_seed_dir: Path, small_config: Path,
                                              tmp_path: Path) -> None:
    """erase -> push (even of an unscrubbed build), erase -> build elsewhere -> push, erase -> seed: absent.
    (The small demo shop: the same generator and rules, a tenth of the keys to push.)"""
    kv, state, tombstones = tmp_path / "kv", tmp_path / "state", tmp_path / "tombstones.txt"
    common = ["--tombstones", str(tombstones)]
    target = ["--target", "local", "--persist", str(kv), "--state-dir", str(state)]
    a, stale = tmp_path / "a", tmp_path / "stale"
    shutil.copytree(small_seed_dir, a)
    shutil.copytree(small_seed_dir, stale)  # a copy made before the erasure, never scrubbed
    assert cli("push", "--build", str(a), *common, *target).returncode == 0
    assert local_kv_get(kv, keys.profile(PERSON)) is not None

    erased = cli("erase", "--person", PERSON, "--data", str(a / "origin"), "--build", str(a), *common, *target)
    assert erased.returncode == 0, erased.stderr
    assert PERSON in tombstones.read_text().split()
    assert marked(kv)
    assert mentions(a) == []  # kv.json, manifest, digests, inputs, profile store: all scrubbed
    assert Origin(a / "origin").resolve(keys.profile(PERSON)) is None

    # push again, of the scrubbed build and of the stale copy: the tombstone keeps the person out of KV
    for build in (a, stale):
        pushed = cli("push", "--build", str(build), *common, *target)
        assert pushed.returncode == 0, pushed.stderr
        assert marked(kv)

    # a build into a new directory, from inputs that still hold the person
    fresh = tmp_path / "fresh"
    inputs = stale / "inputs"
    built = cli("build", "--catalog", str(inputs / "catalog.csv"), "--events", str(inputs / "events.csv"),
                "--shoppers", str(inputs / "shoppers.csv"), "--out", str(fresh), "--config", str(small_config), *common)
    assert built.returncode == 0, built.stderr
    assert mentions(fresh) == [] and Origin(fresh / "origin").resolve(keys.profile(PERSON)) is None
    assert cli("push", "--build", str(fresh), *common, *target).returncode == 0
    assert marked(kv)

    # the demo seed, regenerated (what `make dev` runs): no trace of the person anywhere in its output
    seeded = tmp_path / "seeded"
    assert cli("seed", "--config", str(small_config), "--out", str(seeded), *common).returncode == 0
    assert mentions(seeded) == [] and local_kv_get(kv, keys.profile("c00003")) is not None

    with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as edge:
        # their old session state still names items they viewed: it personalizes nothing and is cleared
        now = int(time.time())
        state = session.encode(session.Session(PERSON, ("p00001", "p00002")), now, TEST_KEY.encode())
        cookie = f"{uid_cookie(PERSON)}; pz_s={state}; pz_vid=v1.x.1.y"
        answer = edge.get("/v1/page?slots=hero,home,recent", headers={"cookie": cookie})
        assert answer.status_code == 200 and set(answer.headers["x-pz-tier"].split(",")) <= {
            "hero=none", "hero=segment", "hero=popular", "home=popular", "recent=popular", "recent=default"}
        assert answer.json()["fragments"]["recent"]["items"][0]["id"] not in ("p00001", "p00002")
        cleared = answer.headers.get_list("set-cookie")
        assert sorted(c.split("=")[0] for c in cleared) == ["pz_s", "pz_vid"] and all("Max-Age=0" in c for c in cleared)
        assert "no-store" in answer.headers["cache-control"]
        beacon = edge.post("/v1/events", content=json.dumps({"events": [
            {"id": "e1", "type": "view", "item": "p00001", "ts": now}]}).encode(),
            headers={"content-type": "text/plain", "cookie": cookie, "user-agent": "Mozilla/5.0"})
        assert beacon.status_code == 202 and beacon.json()["stored"] == 0 and beacon.json()["accepted"] == 1
        other = edge.get("/v1/recommendations?slot=home", headers={"cookie": uid_cookie("c00003")})
        assert other.json()["tier"] == "user"


def marked(kv: Path) -> bool:
    """The person's keys hold the erasure's mark, which carries nothing about them."""
    return all(local_kv_get(kv, key) == codec.erased_mark() for key in (keys.profile(PERSON), keys.visitor(PERSON)))
