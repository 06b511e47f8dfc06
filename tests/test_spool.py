"""The build's record spool: a dict of bytes whose values wait in a temporary file."""

from __future__ import annotations

import os

import pytest

from personalizer_adapters.batch.spool import Spool


def test_a_spool_is_a_dict_of_bytes() -> None:
    spool, same = Spool(), {}
    values = [os.urandom(n) for n in (0, 1, 7, 4096, 300_000)]
    for i, v in enumerate(values * 3):
        spool[f"k{i % 7}"] = v  # keys written again: the newest value wins
        same[f"k{i % 7}"] = v
    assert len(spool) == len(same) and sorted(spool) == sorted(same)
    assert spool == same and dict(spool.items()) == same
    assert "k1" in spool and "nope" not in spool
    del spool["k1"]
    del same["k1"]
    assert spool == same
    with pytest.raises(KeyError):
        spool["k1"]
    assert spool.get("k1") is None
    spool.close()


def test_a_builds_records_wait_on_disk() -> None:
    from personalizer_adapters.batch.build import build
    from personalizer_adapters.batch.seed import load_config
    from personalizer_adapters.batch.seedgen import generate
    from tests.runtime.harness import ROOT

    cfg = {**load_config(ROOT / "kv-seed" / "seed.toml"), "shoppers": 300, "products": 200, "kv_profiles": 300}
    built = build(generate(cfg), cfg)
    assert isinstance(built.records, Spool) and len(built.records) > 300
    assert all(isinstance(v, bytes) and v for v in built.records.values())


def test_a_pickled_spool_takes_its_values_along() -> None:
    """A build is pickled (the tests' cached seed): the copy has the values, not a descriptor of this process."""
    import pickle

    spool = Spool()
    spool.update({"a": b"1" * 5000, "b": b""})
    copy = pickle.loads(pickle.dumps(spool))
    spool.close()
    assert isinstance(copy, Spool) and copy == {"a": b"1" * 5000, "b": b""}
