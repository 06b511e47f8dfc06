"""The deploy bundle (`wrangler deploy --dry-run`) holds the worker and the core, nothing else."""

import os
import subprocess
from pathlib import Path

from tests.runtime.harness import ROOT


def test_bundle_contains_exactly_the_worker_and_the_core(tmp_path: Path) -> None:
    """entry + cf + personalizer/* (+ msgpack when pywrangler vendored it); no adapters, tests,
    node_modules, or generated seed data."""
    lock = ROOT / ".wrangler" / "bundle.lock"  # as tests/runtime/pyodide.mjs: the [build] step takes turns
    lock.parent.mkdir(exist_ok=True)
    subprocess.run(["flock", str(lock), str(ROOT / "node_modules/.bin/wrangler"), "deploy", "--dry-run", "--outdir",
                    str(tmp_path)], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "WRANGLER_SEND_METRICS": "false"})
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.py"))
    # pywrangler (README, Deploy) vendors the [project] dependencies into python_modules/, which wrangler then
    # uploads too: only msgpack may be there.
    modules = [m for m in found if not m.startswith("python_modules/")]
    vendored = {m.split("/")[1] for m in found if m.startswith("python_modules/")}
    assert vendored <= {"msgpack"}, vendored
    core = sorted(f"personalizer/{p.name}" for p in (ROOT / "src" / "personalizer").glob("*.py"))
    assert modules == sorted(["entry.py", "cf.py", *core])
    everything = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()]
    assert not [f for f in everything if any(s in f for s in ("adapters", "tests", "node_modules", "kv-seed"))]
