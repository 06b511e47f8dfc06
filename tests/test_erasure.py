"""An erasure lasts: after `personalizer erase`, no push, build, seed or origin brings the person back."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from personalizer import keys
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
    assert local_kv_get(kv, keys.profile(PERSON)) is None
    assert mentions(a) == []  # kv.json, manifest, digests, inputs, profile store: all scrubbed
    assert Origin(a / "origin").resolve(keys.profile(PERSON)) is None

    # push again, of the scrubbed build and of the stale copy: the tombstone keeps the person out of KV
    for build in (a, stale):
        pushed = cli("push", "--build", str(build), *common, *target)
        assert pushed.returncode == 0, pushed.stderr
        assert local_kv_get(kv, keys.profile(PERSON)) is None

    # a build into a new directory, from inputs that still hold the person
    fresh = tmp_path / "fresh"
    inputs = stale / "inputs"
    built = cli("build", "--catalog", str(inputs / "catalog.csv"), "--events", str(inputs / "events.csv"),
                "--shoppers", str(inputs / "shoppers.csv"), "--out", str(fresh), "--config", str(small_config), *common)
    assert built.returncode == 0, built.stderr
    assert mentions(fresh) == [] and Origin(fresh / "origin").resolve(keys.profile(PERSON)) is None
    assert cli("push", "--build", str(fresh), *common, *target).returncode == 0
    assert local_kv_get(kv, keys.profile(PERSON)) is None

    # the demo seed, regenerated (what `make dev` runs): no trace of the person anywhere in its output
    seeded = tmp_path / "seeded"
    assert cli("seed", "--config", str(small_config), "--out", str(seeded), "--fallback", "", *common).returncode == 0
    assert mentions(seeded) == [] and local_kv_get(kv, keys.profile("c00003")) is not None

    with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as edge:
        answer = edge.get("/v1/recommendations?slot=home", headers={"cookie": uid_cookie(PERSON)})
        assert answer.status_code == 200 and answer.json()["tier"] != "user"
        other = edge.get("/v1/recommendations?slot=home", headers={"cookie": uid_cookie("c00003")})
        assert other.json()["tier"] == "user"
