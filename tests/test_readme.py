"""The README cannot drift: its fenced shell blocks run offline, and every command it mentions inline exists.

- The two commands: `make dev` is started as a user would (on free ports, from the project's directory) and the
  README's `curl` block runs against it, every request answering 2xx; `make test` is this suite, so it is only
  checked to be a target.
- "Bring your own data" runs whole, as a shell script, in a scratch directory laid out like the project
  (the seed's config and exported inputs, the virtualenv), and its outcome is checked.
- Inline `personalizer <command> --flag` mentions name real commands and flags, `make <target>` real targets.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from personalizer import keys
from personalizer_adapters.batch.build import Built
from personalizer_adapters.cli import parser
from tests.runtime.harness import ROOT, local_kv_get
from tests.test_edge_events import free_port

README = (ROOT / "README.md").read_text()
BLOCKS = [m.group(1) for m in re.finditer(r"```sh\n(.*?)```", README, re.S)]


def block(marker: str) -> str:
    (found,) = [b for b in BLOCKS if marker in b]
    return found


def test_every_sh_block_is_covered() -> None:
    """A new fenced sh block must be taught to this test (run, or said why not)."""
    # "personalizer db upgrade": tests/test_origin_postgres.py runs it; "export PZ_DATABASE_URL": the deploy's
    # first build, push and Lambda update, which need Cloudflare's and AWS's accounts (each command is run by
    # the tests against local KV and a local database).
    covered = ("make dev ", "curl -i ", "mkdir -p mydata", "personalizer db upgrade", "export PZ_DATABASE_URL")
    assert all(any(c in b for c in covered) for b in BLOCKS), [b[:60] for b in BLOCKS]


def test_inline_commands_exist() -> None:
    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    mentions = re.findall(r"(?:\.venv/bin/)?personalizer ([a-z-]+)((?: [^`\n|]*)?)", README)
    assert len(mentions) > 20
    for name, rest in mentions:
        assert name in commands, f"README mentions `personalizer {name}`, which is not a command"
        flags = set(commands[name]._option_string_actions)
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
            assert flag in flags, f"README: `personalizer {name} ... {flag}`: no such flag"
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    for target in re.findall(r"`make ([a-z][a-z-]*)", README):
        assert target in targets, f"README mentions `make {target}`, which is not a Makefile target"


@pytest.mark.edge
def test_make_dev_then_the_readme_curl_lines() -> None:
    ports = {"PORT": free_port(), "ORIGIN_PORT": free_port(), "SHOP_PORT": free_port()}
    proc = subprocess.Popen(["make", "dev", *(f"{k}={v}" for k, v in ports.items())], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready "):
                break
        assert lines and lines[-1].startswith("ready "), "".join(lines[-30:])
        printed = "".join(lines)
        assert f"http://127.0.0.1:{ports['SHOP_PORT']}/" in printed  # it prints the demo shop's address
        script = block("curl -i ").replace("127.0.0.1:8787", f"127.0.0.1:{ports['PORT']}")
        script = script.replace("curl ", "curl -sS -f -o /dev/null ")
        run = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        shop = httpx.get(f"http://127.0.0.1:{ports['SHOP_PORT']}/", timeout=30)
        assert shop.status_code == 200 and "/v1/pz.js" in shop.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.edge
def test_make_dev_on_your_own_build(tmp_path: Path) -> None:
    """make dev DATA=build: your pushed build served with its own origin data and event log, your catalog in
    the demo shop; a beacon lands in your build's event log and `refresh` on it pushes (no refusal)."""
    from tests.test_edge_events import TEXT, wait_for
    from tests.test_own_shop import PRODUCTS, write_shop

    catalog, events, campaigns = write_shop(tmp_path)
    build, kv, state = tmp_path / "build", tmp_path / "kv", tmp_path / "state"
    target = ["--target", "local", "--persist", str(kv), "--state-dir", str(state)]
    personalizer = str(ROOT / ".venv" / "bin" / "personalizer")
    for args in (["build", "--catalog", str(catalog), "--events", str(events), "--campaigns", str(campaigns),
                  "--out", str(build), "--tombstones", "/dev/null"], ["push", "--build", str(build), *target]):
        made = subprocess.run([personalizer, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, made.stderr
    ports = {"PORT": free_port(), "ORIGIN_PORT": free_port(), "SHOP_PORT": free_port()}
    proc = subprocess.Popen(["make", "dev", f"DATA={build}", f"STATE={kv}", *(f"{k}={v}" for k, v in ports.items())],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (lines and lines[-1].startswith("ready ")):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert lines and lines[-1].startswith("ready "), "".join(lines[-30:])
        assert f"your build {build}" in "".join(lines)
        cookie = "pz_uid=" + subprocess.run([personalizer, "sign-user", "s03"], cwd=ROOT, capture_output=True,
                                            text=True, timeout=60).stdout.strip()
        edge = f"http://127.0.0.1:{ports['PORT']}"
        page = httpx.get(edge + "/v1/page?slots=home", headers={"cookie": cookie}, timeout=30).json()
        home = page["fragments"]["home"]
        assert home["tier"] == "user" and {c["id"] for c in home["items"]} <= set(PRODUCTS)
        shop = httpx.get(f"http://127.0.0.1:{ports['SHOP_PORT']}/p/k-v60", timeout=30)  # your catalog's page
        assert shop.status_code == 200 and PRODUCTS["k-v60"][1] in shop.text
        view = [{"id": "make-dev-view", "type": "view", "ts": time.time() - 5, "item": "k-grinder"}]
        sent = httpx.post(edge + "/v1/events", json={"events": view}, headers={**TEXT, "cookie": cookie}, timeout=30)
        assert sent.status_code == 202, sent.text
        from personalizer_adapters.store import open_stores

        log = open_stores(build / "origin").log
        wait_for(lambda: any(e["id"] == "make-dev-view" for e in log.events("s03")), what="the beacon in DATA's log")
        refreshed = subprocess.run([personalizer, "refresh", "--data", str(build / "origin"), *target], cwd=ROOT,
                                   capture_output=True, text=True, timeout=300)
        assert refreshed.returncode == 0 and "1 people with new events" in refreshed.stderr, refreshed.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()


def test_make_targets_of_the_two_commands() -> None:
    for target in ("dev", "test"):
        assert re.search(rf"^make {target}\b", block("make dev "), re.M)
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr


@pytest.mark.edge
def test_bring_your_own_data_runs_as_written(built: Built, seed_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "kv-seed").mkdir()
    (tmp_path / "kv-seed" / "seed.toml").symlink_to(ROOT / "kv-seed" / "seed.toml")
    (tmp_path / "kv-seed" / "out").symlink_to(seed_dir)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    run = subprocess.run(["bash", "-e", "-c", block("mkdir -p mydata")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PZ_TOMBSTONES": str(tmp_path / "t.txt")})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "mydata" / "build" / "report.json").read_text())
    assert report["products"] == 4 and report["inputs"]["by_reason"] == {"mydata/events.csv": {"unknown product": 1}}
    manifest = json.loads((tmp_path / "mydata" / "build" / "manifest.json").read_text())
    assert "likes-dairy-eggs" in json.dumps(manifest)
    assert (tmp_path / "build" / "seed-copy" / "kv.json").exists()
    pushed = local_kv_get(tmp_path / ".wrangler" / "state", keys.MANIFEST)
    assert pushed is not None and report["generation"].encode() in pushed
    assert "push done" in run.stderr and "unknown product" in run.stdout + run.stderr
