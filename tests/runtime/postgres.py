"""A real PostgreSQL server for the tests: Debian's ``postgresql`` (``make test`` installs it), started by hand
in a temporary directory on a free loopback port, trust auth, fsync off; one database per test.

As root (CI, containers) the server runs as the ``postgres`` user the package creates: PostgreSQL refuses root.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_names = itertools.count()


def binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[4]))
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    if not found:
        raise RuntimeError("no PostgreSQL server: `make test` installs Debian's postgresql (or set PG_BIN)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner() -> tuple[Callable[[], None] | None, int | None, int | None]:
    """(preexec, uid, gid): the ``postgres`` user's when we are root, else nothing to change."""
    if os.geteuid() != 0:
        return None, None, None
    user = pwd.getpwnam("postgres")

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    return drop, user.pw_uid, user.pw_gid


class Server:
    def __init__(self, directory: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.directory, self.port, self.process = directory, port, process

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://pz@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected); ``start`` brings it back on the same port
        and data."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(30)

    def start(self) -> None:
        self.process = _postgres(self.directory, self.port)
        _wait(self.url(), self.process)


def _postgres(directory: Path, port: int) -> subprocess.Popen[bytes]:
    drop, _, _ = _as_owner()
    with open(directory / "server.log", "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [str(binaries() / "postgres"), "-D", str(directory / "data"), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(directory), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "log_min_messages=fatal"],
            preexec_fn=drop, stdout=subprocess.DEVNULL, stderr=log)


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def postgres_server() -> Iterator[Server]:
    directory = Path(tempfile.mkdtemp(prefix="pz-pg-"))
    drop, uid, gid = _as_owner()
    if uid is not None and gid is not None:
        os.chown(directory, uid, gid)
    try:
        subprocess.run([str(binaries() / "initdb"), "-D", str(directory / "data"), "-U", "pz", "--auth=trust",
                        "-E", "UTF8", "--locale=C", "--no-sync"], preexec_fn=drop, check=True, capture_output=True)
        port = _free_port()
        server = Server(directory, port, _postgres(directory, port))
        try:
            _wait(server.url(), server.process)
            yield server
        finally:
            if server.process.poll() is None:
                server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
