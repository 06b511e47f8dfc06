"""seed: a believable shop, deterministic, with a default tier of its own (the compiled one holds none)."""

import subprocess
import sys
import time
from pathlib import Path

from personalizer import codec, fallback, keys, verify
from personalizer.identity import UID
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import build_seed, load_config
from personalizer_adapters.batch.seedgen import generate
from tests.conftest import TEST_KEY
from tests.runtime.harness import ROOT

SEED = ROOT / "kv-seed" / "seed.toml"


def test_seed_shop_is_large_enough_to_be_believable() -> None:
    """At least 2,000 products in 20 categories, 5,000 shoppers, some out of stock, loyalty tiers."""
    shop = generate(load_config(SEED))
    assert len(shop.products) >= 2000 and len({p["category"] for p in shop.products}) >= 20
    assert len(shop.shoppers) >= 5000
    assert any(p["stock"] == 0 for p in shop.products)
    assert {s["loyalty"] for s in shop.shoppers} >= {"", "silver", "gold"}
    assert set(shop.events["kind"].tolist()) == {0, 1, 2}


def test_seed_records_cover_every_kind_and_decode(built: Built) -> None:
    """Every record decodes as its kind; the manifest names the generation and its segments."""
    manifest = codec.decode(built.records[keys.MANIFEST], expect="manifest").data
    assert manifest["generation"] == built.generation
    for seg in manifest["segments"]:
        assert codec.decode(built.records[keys.segment(built.generation, seg)], expect="segment").data["cards"]
    kinds = {"profile": 0, "item": 0}
    for key, value in built.records.items():
        kind = ("profile" if key.startswith("pz1:p:") else "item" if ":item:" in key else None)
        if kind:
            codec.decode(value, expect=kind)
            kinds[kind] += 1
    assert kinds["profile"] >= 5000 and kinds["item"] >= 2000
    carts = [codec.decode(v, expect="profile").data for k, v in built.records.items() if k.startswith("pz1:p:")]
    assert sum(1 for p in carts if p["cart"]) > 100 and sum(1 for p in carts if p["loyalty"]) > 100


def test_seed_is_deterministic_and_the_default_tier_is_the_shops(built: Built, small_built: Built,
                                                                 small_config: Path) -> None:
    """Same config, same records (the small shop built again). The default tier is a record of the shop's own
    (its popular items, its untargeted generic campaign); the compiled-in fallback holds nothing of any shop."""
    _, again = build_seed(small_config)
    assert again.records == small_built.records
    default = codec.decode(built.records[keys.DEFAULT], expect="default").data
    popular = codec.decode(built.records[keys.popular(built.generation)], expect="popular").data
    rules = codec.decode(built.records[keys.banners(built.generation)], expect="banners").data["rules"]
    assert default["cards"] == popular["cards"] and default["generation"] == built.generation
    generic = [r for r in rules if r["kind"] == "generic" and "target" not in r]
    assert default["banner"] == max(generic, key=lambda r: r["priority"])
    assert fallback.CARDS == () and fallback.NO_BANNER.tier == "none"
    source = (ROOT / "src" / "personalizer" / "fallback.py").read_text()
    assert "/img/banners/" not in source and "Card(" not in source


def test_sign_user_prints_a_token_the_worker_accepts() -> None:
    """`personalizer sign-user` signs with the first key of PZ_SIGNING_KEYS."""
    env = {"PZ_SIGNING_KEYS": TEST_KEY, "PATH": ""}
    out = subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "sign-user", "c00042",
                          "--dev-vars", "/nonexistent"], capture_output=True, text=True, env=env, check=True)
    token = out.stdout.strip()
    assert verify(UID, token, (TEST_KEY.encode(),), int(time.time()), 60) == "c00042"
    bad = subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "sign-user", "bad id",
                          "--dev-vars", "/nonexistent"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "invalid id" in bad.stderr
    nokey = subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "sign-user", "c1",
                            "--dev-vars", "/nonexistent"], capture_output=True, text=True, env={"PATH": ""})
    assert nokey.returncode == 2 and "PZ_SIGNING_KEYS" in nokey.stderr


def test_cli_defaults_are_relative_to_the_working_directory(tmp_path: Path, small_config: Path) -> None:
    """A non-editable install has no project tree beside it: defaults follow the cwd, errors resolve paths."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", *a],  # noqa: E731
                                    cwd=tmp_path, capture_output=True, text=True, timeout=300)
    missing = run("seed")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"{tmp_path / 'kv-seed' / 'seed.toml'}: no such file" in missing.stderr
    (tmp_path / "kv-seed").mkdir()
    (tmp_path / "kv-seed" / "seed.toml").write_text(small_config.read_text())
    no_campaigns = run("seed", "--tombstones", str(tmp_path / "t.txt"))  # the seed's campaigns live beside it
    assert no_campaigns.returncode == 2 and f"{tmp_path / 'kv-seed' / 'campaigns.toml'}: no such file" \
        in no_campaigns.stderr
    (tmp_path / "kv-seed" / "campaigns.toml").write_text((small_config.parent / "campaigns.toml").read_text())
    made = run("seed", "--tombstones", str(tmp_path / "t.txt"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "kv-seed" / "out" / "kv.json").exists()
