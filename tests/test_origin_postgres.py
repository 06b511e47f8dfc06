"""The origin on PostgreSQL: stateless instances (model artifacts read from a directory, nothing written there)
sharing one database; `db upgrade`; the store down or slow is a 503 to retry, never a 200 for events not kept."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from personalizer import codec, keys
from personalizer_adapters.origin.app import SECRET_HEADER
from personalizer_adapters.store import StoreUnavailable, open_stores, postgres
from tests.runtime.harness import ROOT, local_kv_get
from tests.runtime.postgres import Server, postgres_server
from tests.test_edge_events import free_port
from tests.test_events import GOOD
from tests.test_store import beacon

SECRET = "postgres-origin-secret-0123456789"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "PZ_DATABASE_URL": "", **(env or {})})


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with postgres_server() as s:
        yield s


@pytest.fixture(scope="module")
def seeded(server: Server, small_config: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The small demo shop seeded into a fresh database: its origin directory holds only model artifacts."""
    url = server.new_database()
    upgraded = cli("db", "upgrade", "--database", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema version 0 -> {postgres.SCHEMA_VERSION}" in upgraded.stderr
    again = cli("db", "upgrade", "--database", url)
    assert again.returncode == 0 and "already current" in again.stderr
    out = tmp_path_factory.mktemp("pg-seed") / "build"
    made = cli("seed", "--config", str(small_config), "--out", str(out), "--tombstones", "/dev/null",
               env={"PZ_DATABASE_URL": url})
    assert made.returncode == 0, made.stderr
    assert not list((out / "origin").glob("*.sqlite")), "the store is the database's, not a file's"
    return url, out / "origin"


def tree(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with its content's digest: what an instance may not change."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@contextmanager
def origin_process(data: Path | None, url: str) -> Iterator[httpx.Client]:
    """An origin process on the database at ``url``, its model artifacts from ``data`` (``None``: the database's)."""
    port = free_port()
    where = ["--data", str(data)] if data is not None else []
    proc = subprocess.Popen([sys.executable, "-m", "personalizer_adapters.cli", "origin", "--port", str(port),
                             *where, "--database", url, "--dev-vars", "/nonexistent"],
                            cwd=ROOT, env={**os.environ, "ORIGIN_SECRET": SECRET}, stderr=subprocess.PIPE)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={SECRET_HEADER: SECRET}, timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def test_two_stateless_origins_share_one_database(seeded: tuple[str, Path], tmp_path: Path) -> None:
    """Two origin processes on two copies of the artifacts: the same batch delivered to both is stored once;
    both compute the same profile from the shared history; neither writes a byte into its directory."""
    url, origin_dir = seeded
    first, second = (Path(shutil.copytree(origin_dir, tmp_path / name)) for name in ("a", "b"))
    before = tree(first), tree(second)
    batch = {"beacons": [beacon("c00007", GOOD), beacon(None, GOOD[:1], visitor="vpg")]}
    with origin_process(first, url) as a, origin_process(second, url) as b:
        one, two = a.post("/v1/ingest", json=batch), b.post("/v1/ingest", json=batch)
        assert one.status_code == two.status_code == 200
        assert one.json()["stored"] + two.json()["stored"] == len(GOOD) + 1
        assert one.json()["duplicates"] + two.json()["duplicates"] == len(GOOD) + 1
        key = keys.profile("c00550")  # in the store only, never pushed (the small shop pushes 500 of 600)
        ra, rb = (c.post("/v1/resolve", json={"key": key}) for c in (a, b))
        assert ra.status_code == rb.status_code == 200 and ra.content == rb.content
        assert codec.decode(ra.content, expect="profile").data["id"] == "c00550"
        shared = b.post("/v1/resolve", json={"key": keys.segment(_gen(first), "new")})
        assert shared.status_code in (200, 404)
        for key in (keys.popular(_gen(first)), keys.banners(_gen(first))):
            assert a.post("/v1/resolve", json={"key": key}).status_code == 200, key
        health = b.get("/healthz").json()  # the generation's metadata is the database's too
        assert health["store_generation"] == health["generation"] == _gen(first) and health["in_step"] is True
    assert (tree(first), tree(second)) == before
    assert open_stores(first, url).log.events("c00007", "customer")[0]["id"] == "e-view"


def _gen(origin_dir: Path) -> str:
    from personalizer_adapters.batch.model import Model

    return Model.load(origin_dir).generation


def test_an_origin_with_nothing_but_the_database_url(seeded: tuple[str, Path], server: Server) -> None:
    """No data directory at all: the model artifacts are the ones the build wrote into the database with its
    snapshot, and the origin answers as one given the directory does; nothing is written in its working
    directory."""
    url, origin_dir = seeded
    key = keys.profile("c00552")
    with origin_process(origin_dir, url) as packaged:
        expected = packaged.post("/v1/resolve", json={"key": key})
    before = tree(ROOT / "kv-seed")
    with origin_process(None, url) as bare:
        health = bare.get("/healthz").json()
        assert health["artifacts"] == "the store" and health["generation"] == _gen(origin_dir) and health["in_step"]
        got = bare.post("/v1/resolve", json={"key": key})
        assert got.status_code == 200 and got.content == expected.content
        assert bare.post("/v1/resolve", json={"key": keys.popular(_gen(origin_dir))}).status_code == 200
    assert tree(ROOT / "kv-seed") == before
    empty = server.new_database()  # upgraded, never built into
    assert cli("db", "upgrade", "--database", empty).returncode == 0
    missing = cli("origin", "--database", empty, "--port", str(free_port()), "--dev-vars", "/nonexistent",
                  env={"ORIGIN_SECRET": SECRET})
    assert missing.returncode == 2 and "holds no model artifacts" in missing.stderr, missing.stderr


def test_an_origin_on_the_database_follows_each_new_build(seeded: tuple[str, Path], server: Server) -> None:
    """A build that writes a new generation into the database reaches a running origin at its next check,
    without a redeploy; a database that cannot be reached meanwhile keeps the model it serves."""
    from dataclasses import replace

    from personalizer_adapters.batch.model import Model
    from personalizer_adapters.origin.app import Origin

    url = server.new_database()
    assert postgres.upgrade(url)[1] == postgres.SCHEMA_VERSION
    model = Model.load(seeded[1])
    store = open_stores(Path("."), url).profiles
    store.replace_all([("s1", None)], [], [], model.generation, model.files())
    origin = Origin(None, url)
    assert origin.model.generation == model.generation
    newer = replace(model, generation="g-next", cards=model.cards[:10])
    store.replace_all([("s1", None)], [], [], newer.generation, newer.files())
    assert origin.model.generation == model.generation  # not before its next check
    origin.live.check_s, origin.live._next = 0.0, 0.0
    assert origin.model.generation == "g-next" and len(origin.model.cards) == 10
    server.stop()
    try:
        assert origin.model.generation == "g-next"  # the check failed: the model served stays
    finally:
        server.start()


def test_the_store_down_is_a_503_to_retry_and_nothing_is_lost(seeded: tuple[str, Path], server: Server,
                                                              tmp_path: Path) -> None:
    url, origin_dir = seeded
    data = Path(shutil.copytree(origin_dir, tmp_path / "o"))
    batch = {"beacons": [beacon("c00008", GOOD)]}
    with origin_process(data, url) as origin:
        server.stop()
        try:
            down = origin.post("/v1/ingest", json=batch)
            assert down.status_code == 503 and down.headers["retry-after"]
            assert down.json()["error"]["code"] == "unavailable" and "postgres" not in down.text.lower()
            miss = origin.post("/v1/resolve", json={"key": keys.profile("c00551")})
            assert miss.status_code == 503 and miss.json()["error"]["code"] == "unavailable"
        finally:
            server.start()
        back = origin.post("/v1/ingest", json=batch)  # the queue's retry
        assert back.status_code == 200 and back.json()["stored"] == len(GOOD)
        assert origin.post("/v1/ingest", json=batch).json()["duplicates"] == len(GOOD)
        assert origin.post("/v1/resolve", json={"key": keys.profile("c00551")}).status_code == 200


def test_a_slow_store_fails_the_miss_path_within_the_edges_budget(seeded: tuple[str, Path]) -> None:
    """A miss whose reads the database holds up (a table locked by a long migration, say) is answered 503 when
    the resolve deadline (PZ_RESOLVE_DEADLINE_MS, the edge's 150 ms budget by default) passes, not after the
    store's 5 s statement deadline, which the edge would never wait for; ingest, which the queue waits for,
    goes on meanwhile."""
    import psycopg

    url, origin_dir = seeded
    with origin_process(origin_dir, url) as origin, psycopg.connect(url) as locker:
        assert origin.post("/v1/resolve", json={"key": keys.profile("c00554")}).status_code == 200
        locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # held until the block ends
        slow = origin.post("/v1/resolve", json={"key": keys.profile("c00555")}, timeout=2.0)
        assert slow.status_code == 503 and slow.json()["error"]["code"] == "unavailable"
        batch = {"beacons": [beacon("c00015", GOOD)]}
        assert origin.post("/v1/ingest", json=batch).json()["stored"] == len(GOOD)
        locker.rollback()
        assert origin.post("/v1/resolve", json={"key": keys.profile("c00555")}).status_code == 200


def test_db_upgrade_says_what_is_wrong() -> None:
    none = cli("db", "upgrade")
    assert none.returncode == 2 and "--database postgresql://" in none.stderr
    unreachable = cli("db", "upgrade", "--database", f"postgresql://pz:hunter2@127.0.0.1:{free_port()}/x")
    assert unreachable.returncode == 2 and "OperationalError" in unreachable.stderr
    assert "hunter2" not in unreachable.stderr


def test_the_readmes_database_role_is_enough_and_no_more(server: Server, small_config: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The Deploy section's SQL, as written, run by the owner on a database at the first schema: the role it
    makes can seed (a build's snapshot, artifacts included, in a table a later upgrade added), ingest, resolve
    and erase, and cannot upgrade the schema."""
    import re

    import psycopg

    url = server.new_database()
    monkeypatch.setattr(postgres, "SCHEMA_VERSION", 1)
    assert postgres.upgrade(url) == (0, 1)
    monkeypatch.undo()
    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy"):]
    block = re.search(r"```sql\n(.*?)```", deploy, re.S)
    assert block is not None and "CREATE ROLE pz_app" in block.group(1)
    role = f"pz_app_{os.getpid()}"  # roles are the server's, not the database's
    sql = block.group(1).replace("pz_app", role).replace("PASSWORD '...'", "PASSWORD 'not-used-trust-auth'")
    with psycopg.connect(url, autocommit=True) as owner:
        for statement in (line.strip() for line in sql.split(";\n") if line.strip()):
            owner.execute(statement.encode())
    app_url = url.replace("postgresql://pz@", f"postgresql://{role}@")
    refused = cli("db", "upgrade", "--database", app_url)
    assert refused.returncode == 2 and "InsufficientPrivilege" in refused.stderr, refused.stderr
    assert cli("db", "upgrade", "--database", url).returncode == 0  # the owner: schema 1 -> 2 (artifacts)
    made = cli("seed", "--config", str(small_config), "--out", str(tmp_path / "build"), "--tombstones", "/dev/null",
               env={"PZ_DATABASE_URL": app_url})
    assert made.returncode == 0, made.stderr
    with origin_process(None, app_url) as origin:  # the artifacts from the table the upgrade added
        assert origin.post("/v1/ingest", json={"beacons": [beacon("c00014", GOOD)]}).json()["stored"] == len(GOOD)
        assert origin.post("/v1/resolve", json={"key": keys.profile("c00553")}).status_code == 200
    stores = open_stores(tmp_path, app_url)
    assert stores.profiles.erase("c00014") >= 0 and stores.log.erase("c00014") == len(GOOD)
    with psycopg.connect(app_url, autocommit=True) as app, pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("CREATE TABLE pz_sneaky (x int)")


def test_refresh_and_erase_run_on_another_host_against_the_same_database(seeded: tuple[str, Path],
                                                                         tmp_path: Path) -> None:
    """Events ingested by an origin instance; `refresh` in a third process (its own copy of the artifacts)
    pushes the changed profile; `erase` removes the person from the database, and every instance refuses their
    events from then on."""
    url, origin_dir = seeded
    build = origin_dir.parent
    kv, state = tmp_path / "kv", tmp_path / "state"
    target = ["--target", "local", "--persist", str(kv), "--state-dir", str(state)]
    assert cli("push", "--build", str(build), *target).returncode == 0
    before = local_kv_get(kv, keys.profile("c00009"))
    views = [{"id": f"v{i}", "type": "view", "ts": GOOD[0]["ts"] + i, "item": f"p{i + 10:05d}"} for i in range(3)]
    with origin_process(Path(shutil.copytree(origin_dir, tmp_path / "o")), url) as origin:
        assert origin.post("/v1/ingest", json={"beacons": [beacon("c00009", views)]}).json()["stored"] == 3
        elsewhere = Path(shutil.copytree(origin_dir, tmp_path / "batch-host"))
        refreshed = cli("refresh", "--data", str(elsewhere), "--database", url, *target)
        assert refreshed.returncode == 0 and " pushed in " in refreshed.stderr, refreshed.stderr  # (and others')
        after = local_kv_get(kv, keys.profile("c00009"))
        assert after is not None and after != before
        recent = codec.decode(after, expect="profile").data["recent"]
        assert [c[0] for c in recent][:3] == ["p00012", "p00011", "p00010"]
        again = cli("refresh", "--database", url, *target)  # the model artifacts from the database this time
        assert again.returncode == 0 and "0 people with new events" in again.stderr  # the watermark held

        erased = cli("erase", "--person", "c00009", "--data", str(elsewhere), "--database", url, "--build",
                     str(tmp_path / "no-build"), "--tombstones", str(tmp_path / "tombstones.txt"), *target)
        assert erased.returncode == 0, erased.stderr
        stores = open_stores(elsewhere, url)
        assert stores.log.events("c00009") == [] and stores.profiles.shopper("c00009") is None
        late = origin.post("/v1/ingest", json={"beacons": [beacon("c00009", GOOD[:1])]})
        assert late.json()["refused"] == 1 and stores.log.events("c00009") == []
        assert origin.post("/v1/resolve", json={"key": keys.profile("c00009")}).status_code == 404


def test_push_campaigns_updates_the_databases_banner_record(seeded: tuple[str, Path], tmp_path: Path) -> None:
    """push --campaigns with the database: the origins' copy of the banner record (what a miss serves) is the
    new file's, as the target's is; with the database out of reach nothing is pushed or rewritten."""
    url, origin_dir = seeded
    build = Path(shutil.copytree(origin_dir.parent, tmp_path / "build"))
    kv, state = tmp_path / "kv", tmp_path / "state"
    target = ["--target", "local", "--persist", str(kv), "--state-dir", str(state)]
    assert cli("push", "--build", str(build), *target).returncode == 0
    winter = tmp_path / "winter.toml"
    winter.write_text((ROOT / "kv-seed" / "campaigns.toml").read_text().replace("The autumn edit", "The winter edit"))
    key = keys.banners(_gen(origin_dir))
    stores = open_stores(origin_dir, url)
    before = stores.profiles.record(key)
    down = cli("push", "--campaigns", str(winter), "--build", str(build), "--database",
               f"postgresql://pz@127.0.0.1:{free_port()}/pz", *target)
    assert down.returncode == 2 and "Nothing pushed" in down.stderr, down.stderr
    assert stores.profiles.record(key) == before and "winter" not in (build / "kv.json").read_text().lower()
    try:
        pushed = cli("push", "--campaigns", str(winter), "--build", str(build), "--database", url, *target)
        assert pushed.returncode == 0, pushed.stderr
        stored = stores.profiles.record(key)
        assert stored is not None and stored == local_kv_get(kv, key) and stored != before
        titles = [v["title"] for r in codec.decode(stored, expect="banners").data["rules"] for v in r["variants"]]
        assert "The winter edit" in titles
    finally:
        assert before is not None
        stores.profiles.put_record(key, before)  # the module's snapshot as it was, for the tests after


@pytest.mark.edge
def test_beacons_through_the_queue_survive_the_database_going_away(seeded: tuple[str, Path], server: Server,
                                                                    built: Any, tmp_path: Path) -> None:
    """A stream of beacons through the offline edge's queue to a PostgreSQL origin; the database stops for a
    while in the middle: every accepted event is in the database once, counted exactly, when it is back."""
    from starlette.applications import Starlette

    from personalizer_adapters.origin.app import create_app
    from tests.conftest import TEST_KEY, uid_cookie
    from tests.runtime.harness import edge_runtime, serve_asgi
    from tests.test_edge_events import TEXT, wait_for

    url, origin_dir = seeded
    app: Starlette = create_app(Path(shutil.copytree(origin_dir, tmp_path / "o")), SECRET, url)
    log = open_stores(origin_dir, url).log
    with serve_asgi(app) as origin_url:
        variables = {"PZ_SIGNING_KEYS": TEST_KEY, "ORIGIN_URL": origin_url, "ORIGIN_SECRET": SECRET,
                     "EVENTS_RETRY_BASE_S": "1", "EVENTS_RETRY_MAX_S": "2"}
        with edge_runtime(tmp_path / "state", variables=variables,
                          flags={"max-retries": "20", "batch-timeout": "0.2"}) as (edge_url, _), \
                httpx.Client(base_url=edge_url, timeout=30) as edge:
            now = time.time()

            def send(i: int) -> None:
                events = [{"id": f"q{i}-{k}", "type": "view", "ts": now - 5, "item": f"p{k + 1:05d}"} for k in range(2)]
                r = edge.post("/v1/events", json={"events": events},
                              headers={**TEXT, "cookie": uid_cookie("c00012")})
                assert r.status_code == 202 and r.json()["stored"] == 2

            for i in range(10):
                send(i)
            wait_for(lambda: len(log.events("c00012")) == 20, what="the first half")
            server.stop()
            try:
                for i in range(10, 30):
                    send(i)
                time.sleep(3)  # deliveries fail meanwhile: the origin answers 503, the queue retries
                assert app.state.stats["events_stored"] == 20
            finally:
                server.start()
            def count() -> int:
                try:
                    return len(log.events("c00012"))
                except StoreUnavailable:  # the pool this process shares with the origin is being replaced
                    return -1

            wait_for(lambda: count() == 60, what="every event once the database is back")
            time.sleep(2)  # nothing more arrives: no event twice
            mine = log.events("c00012")
            assert len(mine) == 60 and len({e["id"] for e in mine}) == 60


def test_a_build_reads_its_events_from_the_database(seeded: tuple[str, Path], small_config: Path,
                                                     tmp_path: Path) -> None:
    """`build --events store`: the snapshot's history plus the customers' beacons since; the new snapshot
    replaces the old in the database, and a second build from it counts no beacon twice."""
    url, origin_dir = seeded
    build = origin_dir.parent
    catalog = build / "inputs" / "catalog.csv"
    bought = {"id": "pg-buy", "type": "purchase", "ts": time.time() - 60, "order": "o-pg",
              "items": [{"item": "p00042", "quantity": 1, "price": "9.99"}]}
    stores = open_stores(origin_dir, url)
    assert stores.log.ingest([beacon("c00013", [bought])], stores.profiles.erased).stored == 1

    def rebuild(out: Path) -> dict[str, Any]:
        made = cli("build", "--catalog", str(catalog), "--events", "store", "--config", str(small_config),
                   "--out", str(out), "--tombstones", "/dev/null", "--now", str(int(time.time())),
                   env={"PZ_DATABASE_URL": url})
        assert made.returncode == 0 and "events from the store" in made.stderr, made.stderr
        from personalizer_adapters.kv.plan import read_bulk

        record = dict(read_bulk(out / "kv.json"))[keys.profile("c00013")]
        return codec.decode(record, expect="profile").data

    first = rebuild(tmp_path / "one")
    assert "p00042" in first["bought"]
    rows = (tmp_path / "one" / "inputs-from-store" / "events.csv").read_text().count("c00013,p00042,purchase")
    assert rows == 1
    rebuild(tmp_path / "two")
    again = (tmp_path / "two" / "inputs-from-store" / "events.csv").read_text().count("c00013,p00042,purchase")
    assert again == 1  # from the new snapshot, not once more from the beacon log
