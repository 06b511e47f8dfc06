"""The deploy bundle (`wrangler deploy --dry-run`) holds the worker and the core, nothing else."""

import os
import subprocess
from pathlib import Path

from tests.runtime.harness import ROOT


def test_bundle_contains_exactly_the_worker_and_the_core(tmp_path: Path) -> None:
    """entry + cf + personalizer/*; no adapters, tests, node_modules, or generated seed data."""
    subprocess.run([str(ROOT / "node_modules/.bin/wrangler"), "deploy", "--dry-run", "--outdir", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True, env={**os.environ, "WRANGLER_SEND_METRICS": "false"})
    modules = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.py"))
    core = sorted(f"personalizer/{p.name}" for p in (ROOT / "src" / "personalizer").glob("*.py"))
    assert modules == sorted(["entry.py", "cf.py", *core])
    everything = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()]
    assert not [f for f in everything if any(s in f for s in ("adapters", "tests", "node_modules", "kv-seed"))]
