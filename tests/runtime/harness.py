"""Start and stop the offline edge runtime (tests/runtime/edge.mjs) from Python, on a free loopback port."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Local KV states seeded once per distinct seed file, then copied (see seeded_state).
TEMPLATES = ROOT / ".wrangler" / "kv-templates"
TEMPLATE_DAYS = 7  # cached entries (templates, demo builds) unused this long are removed


def wrangler_kv_get(persist: Path, key: str) -> bytes | None:
    """What `wrangler kv key get --local` reads for ``key`` from local KV state at ``persist``; None if absent."""
    out = subprocess.run([str(ROOT / "node_modules/.bin/wrangler"), "kv", "key", "get", key, "--binding",
                          "PERSONALIZATION", "--local", "--persist-to", str(persist)],
                         cwd=ROOT, capture_output=True, env={**os.environ, "WRANGLER_SEND_METRICS": "false"})
    return out.stdout if out.returncode == 0 and b"Value not found" not in out.stdout + out.stderr else None


def local_kv_get(persist: Path, key: str) -> bytes | None:
    """The value of ``key`` in local KV state at ``persist``, read from Miniflare's store itself; None if absent.

    The same answer as wrangler_kv_get (test_edge compares them) without starting wrangler (about 1.2 s a read):
    Miniflare keeps a namespace's entries in a SQLite table ``_mf_entries`` (key, blob id, expiration in ms)
    and each value in a file ``<namespace id>/blobs/<blob id>``. Only the PERSONALIZATION namespace lives here.
    """
    store = persist / "v3" / "kv"
    databases = [p for p in store.glob("miniflare-KVNamespaceObject/*.sqlite") if p.name != "metadata.sqlite"]
    if not databases:
        return None  # nothing was ever written here
    assert len(databases) == 1, f"more than one KV namespace under {store}: {databases}"
    with closing(sqlite3.connect(f"file:{databases[0]}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT blob_id, expiration FROM _mf_entries WHERE key = ?", (key,)).fetchone()
    if row is None or (row[1] is not None and row[1] <= time.time() * 1000):
        return None
    (blob,) = store.glob(f"*/blobs/{row[0]}")
    return blob.read_bytes()


def cached_dir(store: Path, key: str, make: Callable[[Path], object]) -> Path:
    """``store/key``, made once by ``make(directory)`` for every test process and run that asks for the same key.

    Made under a lock shared by the parallel test workers, into a ``.partial`` directory renamed when complete,
    so an entry that exists is whole. Entries of other keys unused for TEMPLATE_DAYS are removed.
    """
    store.mkdir(parents=True, exist_ok=True)
    entry = store / key
    with open(store / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not entry.is_dir():
            partial = entry.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            make(partial)
            partial.rename(entry)
        os.utime(entry)
        cutoff = time.time() - TEMPLATE_DAYS * 86400
        for old in store.iterdir():
            if old.is_dir() and old != entry and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    return entry


def seeded_state(seed: Path, persist: Path) -> None:
    """Give a fresh ``persist`` the local KV state of ``seed`` (a wrangler bulk file).

    Seeding goes through Miniflare's KV at about 1 ms a key (7.5 s for the demo seed); copying the state it
    persisted takes 0.3 s. So each distinct seed is loaded once by kvseed.mjs, as `make dev` loads it, into a
    template under .wrangler/kv-templates (keyed by the seed's bytes, wrangler.toml and the npm lock, shared
    by parallel test workers under a lock), and every runtime of that seed starts from a copy of it.
    """
    key = hashlib.sha256()
    for part in (seed, ROOT / "wrangler.toml", ROOT / "package-lock.json"):
        key.update(hashlib.sha256(part.read_bytes()).digest())
    template = cached_dir(TEMPLATES, key.hexdigest()[:32], lambda partial: subprocess.run(
        ["node", str(ROOT / "tests/runtime/kvseed.mjs"), str(seed), "--persist", str(partial)],
        cwd=ROOT, check=True, capture_output=True, timeout=300))
    # Blob files are written once under a fresh id and never changed in place (a new value is a new blob, the
    # old one is unlinked), so the copy links them; the SQLite databases are real copies.
    for path in sorted((template / "v3").rglob("*")):
        copy = persist / path.relative_to(template)
        if path.is_dir():
            copy.mkdir(parents=True, exist_ok=True)
        elif path.parent.name == "blobs":
            try:
                os.link(path, copy)
            except OSError:  # another file system
                shutil.copyfile(path, copy)
        else:
            shutil.copyfile(path, copy)


_bundle: Path | None = None


def deploy_bundle() -> Path:
    """The deploy bundle (`wrangler deploy --dry-run`, the [build] step included), written once per test
    process: the sources do not change during a session, and every runtime of it serves the same modules."""
    global _bundle
    if _bundle is None:
        import atexit
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="pz-runtime-"))  # this process's own (mode 0700)
        atexit.register(shutil.rmtree, scratch, True)
        out = scratch / "bundle"
        subprocess.run(["node", str(ROOT / "tests/runtime/pyodide.mjs"), "bundle", str(out)], cwd=ROOT, check=True,
                       capture_output=True, timeout=300)  # writeBundle: wrangler's [build] + dry run, under its lock
        _bundle = out
    return _bundle


_options: Path | None = None


def toml_options() -> Path:
    """wrangler's reading of wrangler.toml (edge.mjs --write-options), once per test process."""
    global _options
    if _options is None:
        out = deploy_bundle().parent / "wrangler-options.json"
        subprocess.run(["node", str(ROOT / "tests/runtime/edge.mjs"), "--write-options", str(out)], cwd=ROOT,
                       check=True, capture_output=True, timeout=120)
        _options = out
    return _options


@contextmanager
def edge_runtime(persist: Path, *, seed: Path | None = None, variables: dict[str, str] | None = None,
                 fault: str | None = None, timeout_s: float = 90,
                 flags: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(base_url, log_lines)`` of a running runtime; its stderr is collected into ``log_lines``.

    ``flags``: more edge.mjs flags for tests, e.g. ``{"max-retries": "2", "batch-timeout": "1", "config": path}``.
    ``seed``: local KV holds exactly that bulk file when the runtime starts (a fresh ``persist`` starts from a
    copy of the seeded state, see seeded_state; one with state already is re-seeded by the runtime).
    """
    cmd = ["node", str(ROOT / "tests/runtime/edge.mjs"), "--port", "0", "--persist", str(persist),
           "--vars-file", os.devnull, "--bundle", str(deploy_bundle())]
    if "config" not in (flags or {}):
        cmd += ["--options", str(toml_options())]
    for flag, value in (flags or {}).items():
        cmd += [f"--{flag}", value]
    if seed is not None and not (persist / "v3").exists():
        seeded_state(seed, persist)
    elif seed is not None:
        cmd += ["--seed", str(seed)]
    for k, v in (variables or {}).items():
        cmd += ["--var", f"{k}={v}"]
    env = {**os.environ, "PZ_RUNTIME_FAULT": fault or ""}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    logs: list[str] = []
    reader = threading.Thread(target=lambda: logs.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    url = None
    deadline = time.monotonic() + timeout_s
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("ready "):
                url = line.split()[1]
                break
            if not line and proc.poll() is not None:
                break
        if url is None:
            raise RuntimeError("edge runtime did not start:\n" + "".join(logs[-40:]))
        yield url, logs
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def serve_asgi(app: object, port: int = 0) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn on 127.0.0.1 (``port``, or a free one), in a thread; yields its
    base URL. Leaving the block stops the server: its port refuses connections until served again."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True  # requests still hanging (a scripted stall) are not waited for
        thread.join(10)


class PyodideProbe:
    """tests/runtime/probe.py's functions called inside Pyodide (tests/runtime/probe.mjs), one line each way."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(ROOT / "tests/runtime/probe.mjs"), "--bundle", str(deploy_bundle())],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            logs = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError("the Pyodide probe did not start: " + logs)

    def call(self, fn: str, *args: object) -> object:
        """The function's result; ``RuntimeError`` when Pyodide itself failed (the process is then gone)."""
        import json

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"fn": fn, "args": list(args)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"Pyodide died (exit {self.proc.returncode}) in {fn}: "
                               + (self.proc.stderr.read()[-2000:] if self.proc.stderr else ""))
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{fn} raised inside Pyodide: {answer['error']}")
        return answer["ok"]

    def close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.proc.terminate()
        self.proc.wait(10)


@contextmanager
def pyodide_probe() -> Iterator[PyodideProbe]:
    probe = PyodideProbe()
    try:
        yield probe
    finally:
        probe.close()
