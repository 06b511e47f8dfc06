"""`personalizer push --campaigns FILE`: a new campaigns file live without a batch, in seconds.

The file is checked first (nothing is pushed from a file with a problem). Its banner record, for the generation
the target serves, and the shop's default tier (whose banner is the file's generic campaign) go out as a partial
push (the same journal, resume and drift check as any push), and the build directory they belong to is brought
up to date (kv.json, manifest.json, the origin store's copy), so a later push of that build, or the experiments
report, sees the new campaigns rather than the old.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from personalizer import codec, keys
from personalizer.banners import default_record
from personalizer.errors import DecodeError
from personalizer_adapters.batch.seed import bulk_json_lines, replace_file
from personalizer_adapters.kv.plan import Build, digest, read_bulk
from personalizer_adapters.kv.push import BAD_INPUT, Target, push
from personalizer_adapters.store import StoreUnavailable, open_stores, redacted

from .file import CampaignsError, load_campaigns


def publish(campaigns: Path, build_dir: Path, target: Target, state_dir: Path, *, out: TextIO = sys.stderr,
            database: str | None = None) -> int:
    """Check ``campaigns``, write its banner record into ``build_dir`` and the origin's store (the database at
    ``database``, else the build's SQLite file) and push it to ``target``."""
    try:
        rules = load_campaigns(campaigns)
    except CampaignsError as exc:
        print(f"{exc}\nerror: {len(exc.problems)} problem(s) in the campaigns file: nothing pushed", file=out)
        target.close()
        return BAD_INPUT
    generation = (build_dir / "generation.txt").read_text().strip()
    live = target.get_one(keys.MANIFEST)
    try:
        serving = codec.decode(live, expect="manifest").data.get("generation") if live is not None else None
    except DecodeError:
        serving = None
    if serving != generation:
        print(f"error: {target.name} serves generation {serving or '(none)'}, the build in {build_dir} is "
              f"{generation}: push that build first (or name the build it serves with --build). Nothing pushed.",
              file=out)
        target.close()
        return BAD_INPUT
    now = int(time.time())
    pairs = dict(read_bulk(build_dir / "kv.json"))
    changed = {keys.banners(generation): codec.encode("banners", {"rules": rules}, generation=generation,
                                                      produced_at=now)}
    if keys.DEFAULT in pairs:  # the shop's default tier shows its generic campaign: the new file's
        cards = codec.decode(pairs[keys.DEFAULT], expect="default").data["cards"]
        changed[keys.DEFAULT] = default_record(cards, rules, generation, now)
    if not _update_store(build_dir, database, generation, changed, out):
        target.close()
        return BAD_INPUT
    _rewrite_build(build_dir, pairs, changed)
    print(f"campaigns: {len(rules)} campaigns, {sum(len(r['variants']) for r in rules)} variants from {campaigns} "
          f"for generation {generation}", file=out)
    return push(Build(generation, changed), target, state_dir, out=out, partial=True)


def _update_store(build_dir: Path, database: str | None, generation: str, changed: dict[str, bytes],
                  out: TextIO) -> bool:
    """The origin store's copy of the ``changed`` records (what the miss path serves), when it holds this
    generation's snapshot; ``False`` (nothing written anywhere yet) when the database cannot be reached."""
    if not database and not (build_dir / "origin" / "store.sqlite").exists():
        return True
    try:
        store = open_stores(build_dir / "origin", database).profiles
        held = store.generation()
        if held not in (None, generation):
            print(f"campaigns: the store ({redacted(database) if database else build_dir / 'origin'}) holds "
                  f"generation {held}, not {generation}: its records left as they are", file=out)
            return True
        for key, value in changed.items():
            store.put_record(key, value)
    except (StoreUnavailable, RuntimeError, ValueError) as exc:
        print(f"error: the store: {exc}. Nothing pushed.", file=out)
        return False
    return True


def _rewrite_build(build_dir: Path, pairs: dict[str, bytes], changed: dict[str, bytes]) -> None:
    """The build's kv.json (``pairs``) and manifest.json with the ``changed`` records, each replaced atomically."""
    pairs.update(changed)
    replace_file(build_dir / "kv.json", bulk_json_lines(pairs))
    manifest_path = build_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        manifest.setdefault("records", {}).update({k: digest(v) for k, v in changed.items()})
        replace_file(manifest_path, [json.dumps(manifest, indent=0)])

