"""The worker's vars as wrangler.toml states them: numbers unquoted are numbers, not silently ignored."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from personalizer_adapters.batch.build import Built
from tests.conftest import TEST_KEY, uid_cookie
from tests.runtime.harness import ROOT, edge_runtime, local_kv_get, wrangler_kv_get
from tests.test_edge_origin import shared_seed

pytestmark = pytest.mark.edge


def test_unquoted_numeric_vars_are_read(built: Built, tmp_path: Path) -> None:
    toml = (ROOT / "wrangler.toml").read_text()
    assert 'BROWSER_MAX_AGE_S = "60"' in toml
    config = tmp_path / "wrangler.toml"
    config.write_text(toml.replace('BROWSER_MAX_AGE_S = "60"', "BROWSER_MAX_AGE_S = 7")
                      .replace('MANIFEST_TTL_S = "15"', "MANIFEST_TTL_S = 15.0"))
    with edge_runtime(tmp_path / "state", seed=shared_seed(built, tmp_path), variables={"PZ_SIGNING_KEYS": TEST_KEY},
                      flags={"config": str(config)}) as (url, logs):
        r = httpx.get(f"{url}/v1/recommendations?slot=home", headers={"cookie": "pz_consent=denied"}, timeout=30)
    assert r.status_code == 200 and r.headers["cache-control"] == "private, max-age=7", "".join(logs[-20:])
    assert not any("bad worker configuration" in line for line in logs)


def test_wrangler_kv_local_writes_as_the_readme_says(tmp_path: Path) -> None:
    """`wrangler kv key put/delete --local` work without `--preview false` (the binding has no preview_id)."""
    base = [str(ROOT / "node_modules/.bin/wrangler"), "kv", "key"]
    where = ["--binding", "PERSONALIZATION", "--local", "--persist-to", str(tmp_path)]
    env = {**os.environ, "WRANGLER_SEND_METRICS": "false"}
    put = subprocess.run([*base, "put", "pz1:readme", "hello", *where], cwd=ROOT, capture_output=True, text=True,
                         env=env)
    assert put.returncode == 0, put.stderr
    assert wrangler_kv_get(tmp_path, "pz1:readme") == b"hello"
    gone = subprocess.run([*base, "delete", "pz1:readme", *where], cwd=ROOT, capture_output=True, text=True, env=env)
    assert gone.returncode == 0, gone.stderr
    assert local_kv_get(tmp_path, "pz1:readme") is None


def test_the_global_holdout_through_the_edge(built: Built, tmp_path: Path) -> None:
    """HOLDOUT_PERCENT in the live runtime: a held-out customer gets no personal tier on any slot and the answer
    says holdout; a customer outside it keeps their own list."""
    from personalizer.identity import in_holdout

    customers = [f"c{n:05d}" for n in range(1, 60)]
    held = next(c for c in customers if in_holdout(c, 20))
    free = next(c for c in customers if not in_holdout(c, 20))
    from personalizer import keys
    from personalizer_adapters.batch.seed import bulk_json

    # the shared records and the two customers' profiles: a small KV state, seeded at once
    records = {k: v for k, v in built.records.items() if not k.startswith("pz1:p:") and ":item:" not in k}
    records.update({keys.profile(c): built.records[keys.profile(c)] for c in (held, free)})
    (tmp_path / "kv.json").write_text(bulk_json(records))
    with edge_runtime(tmp_path / "state", seed=tmp_path / "kv.json",
                      variables={"PZ_SIGNING_KEYS": TEST_KEY, "HOLDOUT_PERCENT": "20"}) as (url, logs):
        page = "/v1/page?slots=hero,home,recent,cart,again"
        mine = httpx.get(url + page, headers={"cookie": uid_cookie(held)}, timeout=30)
        other = httpx.get(url + page, headers={"cookie": uid_cookie(free)}, timeout=30)
        html = httpx.get(url + page + "&format=html", headers={"cookie": uid_cookie(held)}, timeout=30)
    assert mine.status_code == 200 and mine.headers["x-pz-holdout"] == "1" and mine.json()["holdout"] is True
    assert not any(t.endswith("=user") or t.endswith("=segment") for t in mine.headers["x-pz-tier"].split(","))
    assert "x-pz-holdout" not in other.headers and "home=user" in other.headers["x-pz-tier"], "".join(logs[-20:])
    assert b'data-pz-holdout=""' in html.content
