"""push / rollback against a server implementing Cloudflare's published KV API, and the plan itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from personalizer import codec, keys
from personalizer_adapters.batch.seed import bulk_json
from personalizer_adapters.kv.cloudflare import CloudflareKV, RateLimiter
from personalizer_adapters.kv.plan import MAX_PAIRS, Build, TargetState, digest, make_plan
from personalizer_adapters.kv.push import BAD_INPUT, OK, PARTIAL, push, rollback
from tests.runtime.cloudflare_api import FakeKVApi
from tests.runtime.harness import ROOT, serve_asgi

TOKEN = "cf-test-token-SECRET-8c1d4e"
ACCOUNT, NAMESPACE = "acc0123", "ns4567"


def make_build(gen: str, profiles: int, items: int = 20, changed: set[int] = frozenset()) -> Build:  # type: ignore
    """A build of ``items`` shared records under ``gen`` and ``profiles`` profiles; ``changed`` alters some."""
    card = ["p1", "T", "/p/1", "/i.jpg", 100, "EUR", "c"]
    rec = {keys.MANIFEST: codec.encode("manifest", {"generation": gen, "built_at": 1, "segments": []}),
           keys.popular(gen): codec.encode("popular", {"name": "popular", "cards": [card]}, generation=gen)}
    for i in range(items):
        rec[keys.item(gen, f"p{i}")] = codec.encode("item", {"item": f"p{i}", "also_bought": [card]}, generation=gen)
    for i in range(profiles):
        rec[keys.profile(f"c{i:06d}")] = codec.encode("profile", {"id": f"c{i:06d}", "loyalty": "gold" if i in changed
                                                                  else ""})
    return Build(gen, rec)


def write_build(directory: Path, build: Build) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kv.json").write_text(bulk_json(build.records))
    (directory / "generation.txt").write_text(build.generation)
    return directory


@pytest.fixture()
def api() -> Iterator[tuple[FakeKVApi, str]]:
    fake = FakeKVApi(TOKEN, ACCOUNT, NAMESPACE)
    with serve_asgi(fake.app) as url:
        yield fake, f"{url}/client/v4"


def client(base: str, sleeps: list[float] | None = None) -> CloudflareKV:
    return CloudflareKV(ACCOUNT, NAMESPACE, TOKEN, base_url=base, backoff_s=0.01,
                        sleep=(sleeps.append if sleeps is not None else time.sleep))


def cli(args: list[str], token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUDFLARE_API_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def cf_args(base: str, build_dir: Path, state: Path) -> list[str]:
    return ["push", "--target", "cloudflare", "--account-id", ACCOUNT, "--namespace-id", NAMESPACE,
            "--api-base", base, "--build", str(build_dir), "--state-dir", str(state)]


def test_push_writes_the_build_in_batches_within_limits_then_sends_nothing(api: tuple[FakeKVApi, str],
                                                                          tmp_path: Path) -> None:
    """25,000 records arrive in bulk requests the API accepts, each key once; a second push writes nothing."""
    fake, base = api
    build = make_build("g1", profiles=25_000)
    build_dir = write_build(tmp_path / "build", build)
    first = cli(cf_args(base, build_dir, tmp_path / "state"))
    assert first.returncode == OK, first.stderr
    assert fake.store == build.records and max(fake.writes.values()) == 1
    assert fake.requests == 4  # ceil(25,021 / 10,000) bulk writes + 1 manifest write
    requests = fake.requests
    again = cli(cf_args(base, build_dir, tmp_path / "state"))
    assert again.returncode == OK and "0 to add, 0 to change, 0 to delete" in again.stderr
    assert fake.requests == requests + 1  # one read: the drift check's GET of pz1:manifest; nothing sent
    for out in (first, again):
        assert TOKEN not in out.stdout + out.stderr


def test_retries_honour_retry_after_and_5xx(api: tuple[FakeKVApi, str], tmp_path: Path) -> None:
    """429 with Retry-After and 5xx mid-push: retried, waiting at least Retry-After; final state = the plan."""
    fake, base = api
    build = make_build("g1", profiles=15_000)
    fake.script = [("status", 500), ("status", 429, {"retry-after": "7"}), ("status", 503), ("status", 502)]
    sleeps: list[float] = []
    assert push(build, client(base, sleeps), tmp_path / "state") == OK
    assert fake.store == build.records and max(fake.writes.values()) == 1
    assert len(sleeps) == 4 and sleeps[1] >= 7 and all(s >= 0 for s in sleeps)


def test_rate_limiter_never_exceeds_its_window() -> None:
    """No window of 300 s ever holds more than 1,200 requests (scaled: 3 per 10 s)."""
    now = [0.0]
    limiter = RateLimiter(3, 10, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    stamps = []
    for _ in range(10):
        limiter.acquire()
        stamps.append(now[0])
    assert all(sum(1 for t in stamps if start <= t < start + 10) <= 3 for start in stamps)
    assert stamps[-1] >= 30


def test_kill_9_mid_push_resumes_without_resending(api: tuple[FakeKVApi, str], tmp_path: Path) -> None:
    """kill -9 while a bulk request hangs: the manifest never flipped; a rerun finishes, each key sent once."""
    fake, base = api
    build = make_build("g1", profiles=25_000)
    build_dir = write_build(tmp_path / "build", build)
    fake.script = [("hang", 0), ("hang", 0), ("hang", 30)]
    env = {**os.environ, "CLOUDFLARE_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "personalizer_adapters.cli",
                             *cf_args(base, build_dir, tmp_path / "state")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while fake.requests < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert fake.requests == 3 and keys.MANIFEST not in fake.store  # the edge still sees the old generation
    assert 0 < len(fake.store) < len(build.records)
    rerun = cli(cf_args(base, build_dir, tmp_path / "state"))
    assert rerun.returncode == OK and "resuming" in rerun.stderr
    assert fake.store == build.records and max(fake.writes.values()) == 1


def test_failure_exit_codes_and_the_token_stays_secret(api: tuple[FakeKVApi, str], tmp_path: Path) -> None:
    """Wrong token: exit 2; persistent 5xx: exit 3 (resumable); bad build dir: exit 2. Never the token."""
    fake, base = api
    build_dir = write_build(tmp_path / "build", make_build("g1", profiles=10))
    wrong = cli(cf_args(base, build_dir, tmp_path / "s1"), token="cf-wrong-token-SECRET-000")
    assert wrong.returncode == BAD_INPUT and "CLOUDFLARE_API_TOKEN" in wrong.stderr
    assert "cf-wrong-token-SECRET-000" not in wrong.stdout + wrong.stderr
    fake.script = [("status", 503)] * 20
    failing = cli([*cf_args(base, build_dir, tmp_path / "s2"), "--max-attempts", "2"])
    assert failing.returncode == PARTIAL and "rerun" in failing.stderr and TOKEN not in failing.stderr
    assert fake.requests == 3  # the wrong token's one, then two tries of the first write: no more
    missing = cli(cf_args(base, tmp_path / "nope", tmp_path / "s3"))
    assert missing.returncode == BAD_INPUT
    no_token = cli(cf_args(base, build_dir, tmp_path / "s4"), token="")
    assert no_token.returncode == BAD_INPUT and "CLOUDFLARE_API_TOKEN" in no_token.stderr


def test_dry_run_prints_the_plan_and_sends_nothing(api: tuple[FakeKVApi, str], tmp_path: Path) -> None:
    """--dry-run: counts, bytes and requests are printed; the API sees no request."""
    fake, base = api
    build_dir = write_build(tmp_path / "build", make_build("g1", profiles=12_000))
    out = cli([*cf_args(base, build_dir, tmp_path / "state"), "--dry-run"])
    assert out.returncode == OK and fake.requests == 0
    assert "12021 to add" in out.stderr and "2 write request(s)" in out.stderr and "1 manifest write" in out.stderr


def test_generations_flip_roll_back_and_old_ones_are_deleted(api: tuple[FakeKVApi, str], tmp_path: Path) -> None:
    """Push A, push B, rollback to A, push C: B (rolled back, beyond the last two) is deleted, A is kept."""
    fake, base = api
    state = tmp_path / "state"
    a, b, c = (make_build(g, profiles=50) for g in ("gA", "gB", "gC"))
    assert push(a, client(base), state) == OK and push(b, client(base), state) == OK
    assert fake.store[keys.MANIFEST] == b.records[keys.MANIFEST] and keys.popular("gA") in fake.store
    assert rollback(client(base), state) == OK and fake.store[keys.MANIFEST] == a.records[keys.MANIFEST]
    assert push(c, client(base), state) == OK
    assert fake.store[keys.MANIFEST] == c.records[keys.MANIFEST]
    assert keys.popular("gA") in fake.store and keys.popular("gC") in fake.store
    assert not [k for k in fake.store if ":gB:" in k]
    assert max(fake.writes[k] for k in fake.store if k.startswith("pz1:p:")) == 1  # profiles unchanged: sent once


def test_plan_touches_only_the_changed_profiles() -> None:
    """Changing 1% of profiles in the same generation plans exactly those writes, nothing else."""
    before, after = make_build("g1", 5000), make_build("g1", 5000, changed=set(range(0, 5000, 100)))
    state = TargetState(before.manifest(), ["g1"])
    plan = make_plan(after, state)
    assert len(plan.writes) == 50 and all(k.startswith("pz1:p:") for k in plan.writes)
    assert not plan.deletes and not plan.flip
    gone = make_plan(make_build("g1", 4990), state)
    assert len(gone.deletes) == 10


def test_batches_respect_the_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch closes before its JSON body would pass the request byte limit."""
    import personalizer_adapters.kv.plan as plan_module

    monkeypatch.setattr(plan_module, "MAX_REQUEST_BYTES", 5_000)
    build = make_build("g1", 400)
    batches = list(make_plan(build, TargetState()).batches(build))
    assert len(batches) > 1 and sum(len(b) for b in batches) == len(build.records) - 1
    assert all(len(b) <= MAX_PAIRS for b in batches)


def test_read_bulk_streams_our_layout_and_parses_any_other(tmp_path: Path) -> None:
    """A one-pair-per-line file and a compact one give the same pairs, binary values intact."""
    import base64
    import json

    from personalizer_adapters.kv.plan import read_bulk

    records = {"pz1:a": b"\x00\xff", "pz1:b": bytes(range(256))}
    (tmp_path / "lines.json").write_text(bulk_json(records))
    (tmp_path / "compact.json").write_text(json.dumps(
        [{"key": k, "value": base64.b64encode(v).decode(), "base64": True} for k, v in records.items()]))
    assert dict(read_bulk(tmp_path / "lines.json")) == dict(read_bulk(tmp_path / "compact.json")) == records
    assert (tmp_path / "lines.json").read_text().count("\n") == len(records) + 2  # "[", one a pair, "]"


@pytest.mark.parametrize("value,seconds", [("7", 7.0), (" 12 ", 12.0), ("²", None), ("٣", None), ("soon", None),
                                           (None, None)])
def test_retry_after_reads_ascii_seconds_or_a_date(value: str | None, seconds: float | None) -> None:
    """Retry-After in delta-seconds (ASCII digits only); anything unreadable is None, never a crash."""
    from personalizer_adapters.kv.cloudflare import retry_after_s

    assert retry_after_s(value) == seconds


def test_drift_is_detected_and_resync_reads_the_target_back(api: tuple[FakeKVApi, str], tmp_path: Path) -> None:
    """A reset namespace or one pushed from elsewhere: push refuses and says why; --resync reads the keys (and
    the digests their metadata carries) back, then only what differs is written and old generations go."""
    fake, base = api
    state = tmp_path / "state"
    a, b = make_build("gA", profiles=30), make_build("gB", profiles=30, changed={1, 2})
    assert push(a, client(base), state) == OK
    assert all(fake.metadata[k] == {"pz": digest(v)} for k, v in a.records.items() if k != keys.MANIFEST)
    fake.store.clear()  # the namespace is reset behind this machine's back
    build_dir = write_build(tmp_path / "b", b)
    refused = cli(cf_args(base, build_dir, state))
    assert refused.returncode == BAD_INPUT and "no pz1:manifest" in refused.stderr and "--resync" in refused.stderr
    assert fake.store == {}  # nothing written on a drifted target
    again = cli([*cf_args(base, build_dir, state), "--resync"])
    assert again.returncode == OK, again.stderr
    assert fake.store == b.records

    # Another machine (no state here) pushed gA then gB; this one re-syncs, then pushes gC: only gC's records
    # and the changed profiles are written, and gA, beyond the two kept, is deleted.
    other = tmp_path / "other-state"
    fake.store.clear()
    fake.metadata.clear()
    assert push(a, client(base), other) == OK and push(b, client(base), other) == OK
    c = make_build("gC", profiles=30, changed={1, 2, 3})
    fake.writes.clear()
    assert push(c, client(base), tmp_path / "fresh", sync=True) == OK
    assert fake.store == {**c.records, **{k: v for k, v in b.records.items() if ":gB:" in k}}
    written = {k for k, n in fake.writes.items() if n}
    assert written == {k for k in c.records if ":gC:" in k} | {keys.MANIFEST, keys.profile("c000003")}
    state_after = TargetState.load(tmp_path / "fresh" / f"cloudflare-{ACCOUNT}-{NAMESPACE}" / "state.json")
    assert state_after.generations == ["gB", "gC"]


def test_a_manifest_changed_elsewhere_is_drift(api: tuple[FakeKVApi, str], tmp_path: Path) -> None:
    fake, base = api
    a, b = make_build("gA", profiles=5), make_build("gB", profiles=5)
    assert push(a, client(base), tmp_path / "mine") == OK
    assert push(b, client(base), tmp_path / "theirs") == OK  # someone else flipped the manifest
    lines: list[str] = []

    class Out:
        def write(self, s: str) -> None:
            lines.append(s)

        def flush(self) -> None:
            pass

    assert push(a, client(base), tmp_path / "mine", out=Out()) == BAD_INPUT  # type: ignore[arg-type]
    assert "names gB" in "".join(lines)
    assert fake.store[keys.MANIFEST] == b.records[keys.MANIFEST]
