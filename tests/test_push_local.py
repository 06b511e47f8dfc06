"""push, rollback and erase against local KV, observed through the offline edge runtime."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from personalizer import keys, preview
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import write_seed
from personalizer_adapters.origin.app import Origin
from personalizer_adapters.store.profiles import ProfileStore
from tests.conftest import TEST_KEY, uid_cookie
from tests.runtime.harness import ROOT, edge_runtime, local_kv_get
from tests.test_push import make_build, write_build

pytestmark = pytest.mark.edge


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "CLOUDFLARE_API_TOKEN": ""})


def generation(edge: httpx.Client) -> str:
    return str(edge.get("/v1/recommendations?slot=home").json()["generation"])


def test_local_push_rollback_and_erase(small_built: Built, small_seed_dir: Path, small_config: Path,
                                      tmp_path: Path) -> None:
    """push A; the edge serves A. push B; it serves B. rollback; A again. erase c00002: gone everywhere.
    (The small demo shop: the same generator and rules, a tenth of the keys to push.)"""
    built, seed_dir = small_built, small_seed_dir
    kv, state = tmp_path / "kv", tmp_path / "push-state"
    target = ["--target", "local", "--persist", str(kv), "--state-dir", str(state)]
    a = cli("push", "--build", str(seed_dir), *target)
    assert a.returncode == 0, a.stderr
    # generation B: `personalizer build` over the seed's exported inputs, a day later
    inputs = seed_dir / "inputs"
    build_b = tmp_path / "build-b"
    made = cli("build", "--catalog", str(inputs / "catalog.csv"), "--events", str(inputs / "events.csv"),
               "--shoppers", str(inputs / "shoppers.csv"), "--out", str(build_b), "--now", str(built.model.now + 86400),
               "--config", str(small_config))
    assert made.returncode == 0 and "no bad rows" in made.stderr, made.stderr
    gen_b = (build_b / "generation.txt").read_text().strip()
    with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY, "MANIFEST_TTL_S": "0"}) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as edge:
        assert generation(edge) == built.generation
        b = cli("push", "--build", str(build_b), *target)
        assert b.returncode == 0, b.stderr
        assert generation(edge) == gen_b != built.generation
        assert cli("rollback", *target).returncode == 0
        assert generation(edge) == built.generation

        # erase: KV, profile store, event log, tombstone; idempotent; the edge answers anonymously
        origin_data = tmp_path / "origin"
        shutil.copytree(seed_dir / "origin", origin_data)
        mine = edge.get("/v1/recommendations?slot=home", headers={"cookie": uid_cookie("c00002")})
        assert mine.json()["tier"] == "user"
        for _ in range(2):
            erased = cli("erase", "--person", "c00002", "--data", str(origin_data), *target,
                         "--tombstones", str(tmp_path / "tombstones.txt"))  # its own: later pushes are others
            assert erased.returncode == 0, erased.stderr
        after = edge.get("/v1/recommendations?slot=home", headers={"cookie": uid_cookie("c00002")})
        assert after.json()["tier"] == "popular"
    assert Origin(origin_data).resolve(keys.profile("c00002")) is None
    assert ProfileStore(origin_data / "store.sqlite").tombstones() == {"c00002"}

    # a rebuild (the seed, over the erased store) does not bring them back
    out = tmp_path / "rebuilt"
    shutil.copytree(origin_data, out / "origin")
    rebuilt = write_seed(small_config, out)
    assert keys.profile("c00002") not in rebuilt.records and keys.profile("c00003") in rebuilt.records
    assert ProfileStore(out / "origin" / "store.sqlite").shopper("c00002") is None
    assert cli("erase", "--person", "bad id", *target).returncode == 2


def test_local_kv_reset_is_drift_and_resync_recovers(tmp_path: Path) -> None:
    """`make clean` (or any reset) empties local KV behind push's back: push says so and pushes nothing;
    `push --resync` reads local KV back (keys and digest metadata) and writes what is missing."""
    build = make_build("gL", profiles=40)
    build_dir = write_build(tmp_path / "build", build)
    persist, state = tmp_path / "kv", tmp_path / "state"
    common = ["push", "--target", "local", "--persist", str(persist), "--build", str(build_dir),
              "--state-dir", str(state)]
    first = cli(*common)
    assert first.returncode == 0, first.stderr
    shutil.rmtree(persist)
    refused = cli(*common)
    assert refused.returncode == 2 and "no pz1:manifest" in refused.stderr and "--resync" in refused.stderr
    assert local_kv_get(persist, keys.MANIFEST) is None
    again = cli(*common, "--resync")
    assert again.returncode == 0, again.stderr
    assert "re-synced local: 0 keys" in again.stderr and f"{len(build.records) - 1} to add" in again.stderr
    assert local_kv_get(persist, keys.MANIFEST) == build.records[keys.MANIFEST]
    resynced = cli(*common, "--resync")  # with everything there, reading it back plans nothing
    assert resynced.returncode == 0 and "0 to add, 0 to change, 0 to delete" in resynced.stderr, resynced.stderr


def test_the_projects_own_seeding_is_not_drift(tmp_path: Path) -> None:
    """push a build, then `make seed` (the demo seed reloaded into local KV), then push again: the push reads
    local KV back and goes ahead instead of refusing; a build written there by anyone else is still drift."""
    from tests.test_kvseed import seed

    build = make_build("gS", profiles=10)
    build_dir = write_build(tmp_path / "build", build)
    persist, state = tmp_path / "state", tmp_path / "push-state"  # seed() loads into tmp_path / "state"
    common = ["push", "--target", "local", "--persist", str(persist), "--build", str(build_dir),
              "--state-dir", str(state)]
    assert cli(*common).returncode == 0
    seed(tmp_path, {"pz1:manifest": b"the-demo-seed", "pz1:x": b"demo"})  # what make seed does
    again = cli(*common)
    assert again.returncode == 0, again.stderr
    assert "holds the demo seed" in again.stderr
    assert local_kv_get(persist, keys.MANIFEST) == build.records[keys.MANIFEST]
    from personalizer_adapters.kv.localkv import LocalKV

    other = LocalKV(persist)  # someone else's write: drift, refused as before
    other.put_many([("pz1:manifest", b"not-ours")])
    other.close()
    refused = cli(*common)
    assert refused.returncode == 2 and "--resync" in refused.stderr


def test_push_campaigns_changes_the_banners_without_a_batch(small_built: Built, small_seed_dir: Path,
                                                             tmp_path: Path) -> None:
    """push --campaigns: the file is checked, its banner record (and the default tier's banner) pushed for the
    generation the target serves and written into the build (a later push of it keeps the new campaigns); the
    edge shows them."""
    from personalizer import codec

    kv, state, build = tmp_path / "kv", tmp_path / "state", tmp_path / "build"
    shutil.copytree(small_seed_dir, build)
    target = ["--target", "local", "--persist", str(kv), "--state-dir", str(state)]
    assert cli("push", "--build", str(build), *target).returncode == 0
    gen = (build / "generation.txt").read_text().strip()
    demo = (ROOT / "kv-seed" / "campaigns.toml").read_text()
    winter = tmp_path / "winter.toml"
    winter.write_text(demo.replace("The autumn edit", "The winter edit"))
    pushed = cli("push", "--campaigns", str(winter), "--build", str(build), *target)
    assert pushed.returncode == 0, pushed.stderr
    assert "0 to add, 2 to change" in pushed.stderr and f"for generation {gen}" in pushed.stderr
    shown = local_kv_get(kv, keys.DEFAULT)  # the shop's default tier shows the new file's generic campaign
    assert shown is not None and codec.decode(shown, expect="default").data["banner"]["variants"][0]["title"] == \
        "The winter edit"

    def generic_title() -> str:
        raw = local_kv_get(kv, keys.banners(gen))
        assert raw is not None
        rules = codec.decode(raw, expect="banners").data["rules"]
        return str(next(r for r in rules if r["id"] == "generic")["variants"][0]["title"])

    assert generic_title() == "The winter edit"
    again = cli("push", "--build", str(build), *target)  # the build was updated too: nothing to put back
    assert again.returncode == 0 and "0 to add, 0 to change" in again.stderr, again.stderr
    assert generic_title() == "The winter edit"
    with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _):
        banner = httpx.get(url + "/v1/banner?slot=hero", headers={"cookie": "pz_consent=denied"}, timeout=30)
        assert banner.json()["banner"]["title"] == "The winter edit"

    broken = tmp_path / "broken.toml"
    broken.write_text(demo.replace('kind = "generic"', 'kind = "everyone"'))
    refused = cli("push", "--campaigns", str(broken), "--build", str(build), *target)
    assert refused.returncode == 2 and "unknown trigger 'everyone'" in refused.stderr and "nothing pushed" in \
        refused.stderr
    other = tmp_path / "other"
    shutil.copytree(build, other)
    (other / "generation.txt").write_text("gOther\n")
    wrong = cli("push", "--campaigns", str(winter), "--build", str(other), *target)
    assert wrong.returncode == 2 and f"serves generation {gen}" in wrong.stderr
    assert generic_title() == "The winter edit"


AIMED = """
[[campaigns]]
id = "de-only"
priority = 30
kind = "generic"
countries = ["DE"]
  [[campaigns.variants]]
  id = "de-a"
  title = "Hallo Deutschland"
  body = "Versandkostenfrei."
  cta = "Los"
  url = "/de"
  image = "/img/de.jpg"

[[campaigns]]
id = "xmas-link"
priority = 20
kind = "generic"
utm_campaign = ["xmas"]
  [[campaigns.variants]]
  id = "xmas-a"
  title = "From the newsletter"
  body = "Your Christmas picks."
  cta = "Open"
  url = "/xmas"
  image = "/img/xmas.jpg"

[[campaigns]]
id = "phones"
priority = 10
kind = "generic"
device = "mobile"
  [[campaigns.variants]]
  id = "app-a"
  title = "Get the app"
  body = "Faster on your phone."
  cta = "Install"
  url = "/app"
  image = "/img/app.jpg"

[[campaigns]]
id = "last-year"
priority = 90
kind = "generic"
start = 2025-12-01T00:00:00Z
end = 2025-12-27T00:00:00Z
  [[campaigns.variants]]
  id = "old-a"
  title = "Last year's sale"
  body = "Over."
  cta = "Gone"
  url = "/old"
  image = "/img/old.jpg"
"""


SCHEDULED = """
[[campaigns]]
id = "xmas-sale"
priority = 3
kind = "generic"
start = 2026-12-24T18:00:00+01:00
end = 2026-12-27T00:00:00+01:00
  [[campaigns.variants]]
  id = "xmas-sale-a"
  title = "Sale"
  body = "b"
  cta = "c"
  url = "/sale"
  image = "/img/sale.jpg"

[[campaigns]]
id = "sunday-brunch"
priority = 2
kind = "generic"
weekdays = ["sun"]
hours = ["09:00-10:00"]
  [[campaigns.variants]]
  id = "brunch-a"
  title = "Brunch"
  body = "b"
  cta = "c"
  url = "/brunch"
  image = "/img/brunch.jpg"
"""


def test_targeted_campaigns_through_the_live_edge(small_built: Built, small_seed_dir: Path, tmp_path: Path) -> None:
    """Campaigns pushed with targeting are chosen at the edge from the request alone: the country Cloudflare
    gives (offline: cf-ipcountry), the page's utm_campaign, the device hint, the schedule."""
    kv, state, build = tmp_path / "kv", tmp_path / "state", tmp_path / "build"
    shutil.copytree(small_seed_dir, build)
    target = ["--target", "local", "--persist", str(kv), "--state-dir", str(state)]
    assert cli("push", "--build", str(build), *target).returncode == 0
    aimed = tmp_path / "aimed.toml"
    aimed.write_text((ROOT / "kv-seed" / "campaigns.toml").read_text() + AIMED + SCHEDULED + tokyo_campaigns())
    pushed = cli("push", "--campaigns", str(aimed), "--build", str(build), *target)
    assert pushed.returncode == 0, pushed.stderr
    denied = {"cookie": "pz_consent=denied", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)"}  # generic only
    with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as edge:
        def banner(query: str = "", **headers: str) -> str:
            answer = edge.get(f"/v1/page?slots=hero{query}", headers={**denied, **headers})
            return str(answer.json()["fragments"]["hero"]["banner"]["id"])

        assert banner(**{"cf-ipcountry": "DE"}) == "de-only"
        assert banner(**{"cf-ipcountry": "FR"}) == "generic"
        assert banner("&utm_campaign=XMAS", **{"cf-ipcountry": "FR"}) == "xmas-link"
        assert banner(**{"cf-ipcountry": "FR", "sec-ch-ua-mobile": "?1"}) == "phones"
        assert banner(**{"sec-ch-ua-mobile": "?0", "user-agent": "Mozilla/5.0 (iPhone) Mobile"}) == "generic"
        assert banner(**{"user-agent": "Mozilla/5.0 (Linux; Android 14) Mobile Safari"}) == "phones"
        # local hours in the visitor's own zone, by the worker's Intl clock inside Pyodide
        assert banner(**{"cf-ipcountry": "JP", "cf-timezone": "Asia/Tokyo"}) == "tokyo-now"
        assert banner(**{"cf-ipcountry": "JP", "cf-timezone": "America/Los_Angeles"}) == "generic"
        assert banner(**{"cf-ipcountry": "JP", "cf-timezone": "Not/A_Zone"}) == "generic"

        # The schedule at its boundaries, and local hours across both daylight-saving changes in Berlin, by the
        # worker's own clock of zones (JS Intl in Pyodide): a preview link's moment is the one they are tried at.
        def matched(at: str, zone: str = "Europe/Berlin") -> dict[str, bool]:
            now = int(time.time())
            instant = int(datetime.fromisoformat(at).timestamp())
            link = preview.sign(preview.Preview("generic", at=instant, timezone=zone, expires=now + 60), now,
                                TEST_KEY.encode())
            about = edge.get(f"/v1/page?slots=hero&preview={link}", headers=denied).json()["preview"]
            return {t["campaign"]: t["matched"] for t in about["trace"]}

        assert not matched("2026-12-24T16:59:59+00:00")["xmas-sale"]  # 17:59:59 CET: a second early
        assert matched("2026-12-24T17:00:00+00:00")["xmas-sale"]  # its first second
        assert matched("2026-12-26T22:59:59+00:00")["xmas-sale"]  # its last second
        assert not matched("2026-12-26T23:00:00+00:00")["xmas-sale"]  # its end is not in it
        for utc, inside in (("2026-03-22T08:30:00+00:00", True),    # a Sunday 09:30 CET
                            ("2026-03-29T08:30:00+00:00", False),   # DST began that night: 10:30 CEST
                            ("2026-03-29T07:30:00+00:00", True),    # 09:30 CEST
                            ("2026-10-25T08:30:00+00:00", True),    # DST ended that night: 09:30 CET
                            ("2026-10-25T07:30:00+00:00", False),   # 08:30 CET
                            ("2026-10-24T07:30:00+00:00", False)):  # a Saturday 09:30 CEST
            assert matched(utc)["sunday-brunch"] is inside, utc
        assert not matched("2026-03-22T08:30:00+00:00", "America/New_York")["sunday-brunch"]  # 04:30 there


def tokyo_campaigns() -> str:
    """Two campaigns on Tokyo's local hours: one around its time now (an hour either side), one twelve hours
    away; the zone's time is computed here independently of the edge (zoneinfo, not Intl)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    tokyo = datetime.now(ZoneInfo("Asia/Tokyo"))
    minute = tokyo.hour * 60 + tokyo.minute
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[tokyo.weekday()]

    def span(start: int, end: int) -> str:
        return f"{start // 60 % 24:02d}:{start % 60:02d}-{end // 60 % 24:02d}:{end % 60:02d}"

    def campaign(cid: str, priority: int, hours: str, days: str) -> str:
        return f"""
[[campaigns]]
id = "{cid}"
priority = {priority}
kind = "generic"
hours = ["{hours}"]
weekdays = [{days}]
  [[campaigns.variants]]
  id = "{cid}-a"
  title = "Tokyo"
  body = "b"
  cta = "c"
  url = "/t"
  image = "/t.jpg"
"""
    every = ", ".join(f'"{d}"' for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    return (campaign("tokyo-later", 26, span(minute + 600, minute + 720), every)
            + campaign("tokyo-now", 25, span(minute - 60, minute + 60), f'"{day}"' if 60 <= minute < 1380 else every))
