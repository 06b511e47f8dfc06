"""Shared fixtures: the seeded shop (built once), signing keys, a fixed clock, the core over the seed."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from personalizer import Config, InMemoryKV, Personalizer
from personalizer.identity import UID, sign
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import write_seed
from tests.runtime.harness import ROOT, cached_dir

TEST_KEY = "test-signing-key-0123456789abcdef"
OLD_KEY = "retired-signing-key-0123456789abc"
CONFIG = Config(signing_keys=(TEST_KEY.encode(), OLD_KEY.encode()))


class FixedClock:
    def __init__(self, now: float | None = None) -> None:
        self.t = time.time() if now is None else now

    def now(self) -> float:
        return self.t

    def monotonic_ms(self) -> float:
        return time.perf_counter() * 1000


def uid_cookie(user: str, *, key: str = TEST_KEY, issued_at: int | None = None) -> str:
    return f"{UID}={sign(UID, user, int(time.time()) if issued_at is None else issued_at, key.encode())}"


@pytest.fixture(scope="session", autouse=True)
def own_tombstones(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests (and the CLIs they start) keep their erasures in a list of their own, never the developer's."""
    os.environ["PZ_TOMBSTONES"] = str(tmp_path_factory.mktemp("tombstones") / "tombstones.txt")


@pytest.fixture(scope="session")
def seed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seed")


def cached_seed(cache: pytest.Cache | None, config: Path, out: Path) -> Built:
    """write_seed(config, out), built once for every test process and run while nothing it reads changes.

    The demo build takes about 5 s and is deterministic (its clock is the config's ``now``): the first test
    process to need it builds it (harness.cached_dir: under a lock shared by the xdist workers) into pytest's
    cache directory, keyed by the config, every source file, the Python version and every installed package's
    version; every process then copies the written directory to ``out`` and loads the pickled result.
    """
    if cache is None:  # -p no:cacheprovider
        return write_seed(config, out)
    key = hashlib.sha256(config.read_bytes())
    key.update((config.parent / "campaigns.toml").read_bytes())  # the campaigns file beside it
    for source in sorted((ROOT / "src").rglob("*.py")):
        key.update(str(source.relative_to(ROOT)).encode() + b"\0" + source.read_bytes())
    versions = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    key.update(repr((sys.version, versions)).encode())

    def make(partial: Path) -> None:
        partial.mkdir()
        made = write_seed(config, partial / "out")
        (partial / "built.pickle").write_bytes(pickle.dumps(made))

    entry = cached_dir(cache.mkdir("pz-builds"), key.hexdigest()[:32], make)
    shutil.copytree(entry / "out", out, dirs_exist_ok=True)
    return pickle.loads((entry / "built.pickle").read_bytes())  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def built(seed_dir: Path, request: pytest.FixtureRequest) -> Built:
    """The seeded shop built from kv-seed/seed.toml (the golden fixture), written as a wrangler bulk file."""
    return cached_seed(request.config.cache, ROOT / "kv-seed" / "seed.toml", seed_dir)


# The demo shop at a tenth of its size, for tests that push whole builds and rebuild them (push, erase): the
# same generator and rules, 500 profiles in KV instead of 5,000 (a push to local KV costs ~1 ms a key).
SMALL_SEED = {"products": 300, "shoppers": 600, "kv_profiles": 500, "exposures": 400}


@pytest.fixture(scope="session")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = (ROOT / "kv-seed" / "seed.toml").read_text()
    for name, value in SMALL_SEED.items():
        text, n = re.subn(rf"(?m)^{name} = \d+", f"{name} = {value}", text)
        assert n == 1, name
    path = tmp_path_factory.mktemp("small-config") / "seed.toml"
    path.write_text(text)
    shutil.copyfile(ROOT / "kv-seed" / "campaigns.toml", path.parent / "campaigns.toml")
    return path


@pytest.fixture(scope="session")
def small_seed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("small-seed")


@pytest.fixture(scope="session")
def small_built(small_config: Path, small_seed_dir: Path, request: pytest.FixtureRequest) -> Built:
    """The small demo shop (SMALL_SEED) built into ``small_seed_dir``."""
    return cached_seed(request.config.cache, small_config, small_seed_dir)


@pytest.fixture()
def core(built: Built) -> Personalizer:
    """The core under CPython over the seed's records, with the test signing keys."""
    return Personalizer(CONFIG, InMemoryKV(built.records), FixedClock(), lambda: "vtestvisitor")
