"""Local KV seeding (tests/runtime/kvseed.mjs): binary-safe, and local KV ends equal to the seed."""

import base64
import json
import os
import subprocess
from pathlib import Path

from tests.runtime.harness import ROOT, local_kv_get, wrangler_kv_get

ENV = {**os.environ, "WRANGLER_SEND_METRICS": "false"}


def seed(tmp: Path, pairs: dict[str, bytes], *flags: str) -> str:
    path = tmp / "kv.json"
    path.write_text(json.dumps([{"key": k, "value": base64.b64encode(v).decode(), "base64": True}
                                for k, v in pairs.items()]))
    out = subprocess.run(["node", str(ROOT / "tests/runtime/kvseed.mjs"), str(path), "--persist", str(tmp / "state"),
                          *flags], cwd=ROOT, check=True, capture_output=True, env=ENV, text=True)
    return out.stderr


def test_reseeding_replaces_local_kv_and_keeps_bytes_intact(tmp_path: Path) -> None:
    """Binary values read back byte-identical through wrangler; a key the new seed lacks is removed."""
    binary = bytes(range(256)) * 3
    seed(tmp_path, {"pz1:keep": binary, "pz1:stale": b"\xff\x00old"})
    assert local_kv_get(tmp_path / "state", "pz1:stale") == b"\xff\x00old"
    seed(tmp_path, {"pz1:keep": binary})
    assert wrangler_kv_get(tmp_path / "state", "pz1:keep") == binary
    assert local_kv_get(tmp_path / "state", "pz1:stale") is None


def test_make_dev_never_reseeds_over_a_pushed_build(tmp_path: Path) -> None:
    """--keep-pushed (make dev): the demo seed reloads over its own earlier load, never over a manifest that
    someone else wrote (a local push); without the flag (make seed) it goes back to the demo."""
    from personalizer_adapters.kv.localkv import LocalKV

    seed(tmp_path, {"pz1:manifest": b"demo-1", "pz1:x": b"1"}, "--keep-pushed")
    seed(tmp_path, {"pz1:manifest": b"demo-2", "pz1:x": b"2"}, "--keep-pushed")  # the seed changed: reloaded
    assert local_kv_get(tmp_path / "state", "pz1:manifest") == b"demo-2"
    pushed = LocalKV(tmp_path / "state")
    pushed.put_many([("pz1:manifest", b"my-own-build"), ("pz1:x", b"mine")])
    pushed.close()
    said = seed(tmp_path, {"pz1:manifest": b"demo-3", "pz1:x": b"3"}, "--keep-pushed")
    assert "not reloading the demo seed" in said and "make seed" in said
    assert local_kv_get(tmp_path / "state", "pz1:manifest") == b"my-own-build"
    assert local_kv_get(tmp_path / "state", "pz1:x") == b"mine"
    seed(tmp_path, {"pz1:manifest": b"demo-3", "pz1:x": b"3"})  # make seed: back to the demo
    assert local_kv_get(tmp_path / "state", "pz1:manifest") == b"demo-3"


def test_the_seed_command_leaves_committed_sources_alone(tmp_path: Path, small_config: Path) -> None:
    """`personalizer seed` writes its outputs only: the worker's committed sources (fallback.py) are not touched."""
    fallback = ROOT / "src" / "personalizer" / "fallback.py"
    before = fallback.stat().st_mtime_ns, fallback.read_bytes()
    out = subprocess.run([str(ROOT / ".venv/bin/personalizer"), "seed", "--config", str(small_config), "--out",
                          str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr
    assert (fallback.stat().st_mtime_ns, fallback.read_bytes()) == before
