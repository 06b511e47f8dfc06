"""`make dev`'s three servers on a port already in use: a one-line error naming the port and what to set."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from personalizer_adapters.batch.build import Built
from tests.runtime.harness import ROOT


@pytest.fixture()
def taken() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_origin_on_a_taken_port(taken: socket.socket, built: Built, seed_dir: Path) -> None:
    port = taken.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "origin", "--port", str(port),
                          "--data", str(seed_dir / "origin")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    taken.close()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr and "ORIGIN_PORT=" in out.stderr


def test_shop_on_a_taken_port_or_without_a_key(taken: socket.socket, built: Built, seed_dir: Path,
                                               tmp_path: Path) -> None:
    port = taken.getsockname()[1]
    cmd = [sys.executable, "-m", "personalizer_adapters.cli", "shop", "--inputs", str(seed_dir / "inputs"),
           "--dev-vars", os.devnull]
    env = {k: v for k, v in os.environ.items() if k != "PZ_SIGNING_KEYS"}
    out = subprocess.run([*cmd, "--port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    taken.close()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr and "SHOP_PORT=" in out.stderr
    out = subprocess.run([*cmd, "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "no signing key" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.edge
def test_edge_runtime_on_a_taken_port(taken: socket.socket, tmp_path: Path) -> None:
    port = taken.getsockname()[1]
    out = subprocess.run(["node", str(ROOT / "tests/runtime/edge.mjs"), "--port", str(port), "--persist",
                          str(tmp_path / "state"), "--vars-file", os.devnull], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    taken.close()
    assert out.returncode == 2 and "ready" not in out.stdout
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr and "make dev PORT=" in out.stderr
