"""`make bench`: the page request's own time, CPython vs Pyodide, measured side by side in one run.

Work measured: GET /v1/page?slots=hero,home,recent for signed-in seeded customers (200 of them in turn),
KV values already in memory, so only the worker's own work counts: cookie verification, decoding the
profile, the ladder, banner choice, rendering. Shared records are in the isolate cache after warm-up,
as they are in a warm production isolate.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
N, WARMUP, USERS = 2000, 200, 200
KEY = "bench-signing-key-0123456789abcdef"


def spec_file(tmp: Path) -> Path:
    pairs = json.loads((ROOT / "kv-seed" / "out" / "kv.json").read_text())
    users = sorted(p["key"].split(":")[-1] for p in pairs if p["key"].startswith("pz1:p:"))[:USERS]
    wanted = {f"pz1:p:{u}" for u in users}
    records = {p["key"]: p["value"] for p in pairs if not p["key"].startswith("pz1:p:") or p["key"] in wanted}
    assert all(p["base64"] for p in pairs)
    path = tmp / "spec.json"
    path.write_text(json.dumps({"records": records, "users": users, "key": KEY}))
    return path


def stats(ms: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return statistics.median(ms), q[98]


def cpython(spec: Path, pure: bool) -> list[float]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    if pure:
        env["MSGPACK_PUREPYTHON"] = "1"  # msgpack's own switch to its fallback, as in the offline Pyodide
    out = subprocess.run([sys.executable, str(ROOT / "tests/bench/core_bench.py"), str(spec), str(N),
                          str(WARMUP)], check=True, capture_output=True, text=True, env=env)
    return list(json.loads(out.stdout))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = spec_file(Path(tmp))
        print(f"benchmark: {N} requests (+{WARMUP} warm-up) of GET /v1/page?slots=hero,home,recent, "
              f"{USERS} signed-in customers, KV values in memory", file=sys.stderr)
        rows = {"CPython 3.11, compiled msgpack: core": cpython(spec, pure=False),
                "CPython 3.11, pure-Python msgpack: core": cpython(spec, pure=True)}
        out = subprocess.run(["node", str(ROOT / "tests/bench/pyodide_bench.mjs"), str(spec), str(N), str(WARMUP)],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        py = json.loads(out.stdout.strip().splitlines()[-1])
        rows["Pyodide 0.28 (Py 3.13), pure-Python msgpack: core"] = py["core"]
        rows["Pyodide 0.28, pure-Python msgpack: worker fetch via SDK"] = py["worker"]
    base = stats(rows["CPython 3.11, pure-Python msgpack: core"])[0]
    print(f"{'run':58} {'median ms':>10} {'p99 ms':>8} {'x CPython*':>10}")
    for name, ms in rows.items():
        med, p99 = stats(ms)
        print(f"{name:58} {med:10.3f} {p99:8.3f} {med / base:10.2f}")
    print("* ratio of medians to CPython with the same (pure-Python) msgpack as the offline Pyodide")


if __name__ == "__main__":
    main()
