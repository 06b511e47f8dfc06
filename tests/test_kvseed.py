"""Local KV seeding (tests/runtime/kvseed.mjs): binary-safe, and local KV ends equal to the seed."""

import base64
import json
import os
import subprocess
from pathlib import Path

from tests.runtime.harness import ROOT, wrangler_kv_get

ENV = {**os.environ, "WRANGLER_SEND_METRICS": "false"}


def seed(tmp: Path, pairs: dict[str, bytes]) -> None:
    path = tmp / "kv.json"
    path.write_text(json.dumps([{"key": k, "value": base64.b64encode(v).decode(), "base64": True}
                                for k, v in pairs.items()]))
    subprocess.run(["node", str(ROOT / "tests/runtime/kvseed.mjs"), str(path), "--persist", str(tmp / "state")],
                   cwd=ROOT, check=True, capture_output=True, env=ENV)


def test_reseeding_replaces_local_kv_and_keeps_bytes_intact(tmp_path: Path) -> None:
    """Binary values read back byte-identical through wrangler; a key the new seed lacks is removed."""
    binary = bytes(range(256)) * 3
    seed(tmp_path, {"pz1:keep": binary, "pz1:stale": b"\xff\x00old"})
    assert wrangler_kv_get(tmp_path / "state", "pz1:stale") == b"\xff\x00old"
    seed(tmp_path, {"pz1:keep": binary})
    assert wrangler_kv_get(tmp_path / "state", "pz1:keep") == binary
    assert wrangler_kv_get(tmp_path / "state", "pz1:stale") is None
