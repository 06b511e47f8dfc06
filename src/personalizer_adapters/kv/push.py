"""`personalizer push` / `rollback`: a build to a KV target, diff-only, resumable, generation-safe.

Every confirmed request is appended to a journal before the next one is sent; a rerun after any
interruption (kill -9 included) replays the journal onto the last saved state and sends only what is
left. The manifest flips only after every record it points to is confirmed.
Exit codes: 0 done, 2 bad input, 3 partial failure (rerun to resume).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from tqdm import tqdm

from personalizer import codec, keys
from personalizer.errors import DecodeError

from .cloudflare import PushError
from .plan import Build, Plan, TargetState, digest, generation_of, make_plan

OK, BAD_INPUT, PARTIAL = 0, 2, 3


class Target(Protocol):
    """A KV namespace. Writes carry each value's digest as the key's metadata (``{"pz": digest}``), so
    ``list_keys`` can tell what a key holds without reading it (``--resync``)."""

    name: str
    requests: int

    def put_many(self, pairs: Sequence[tuple[str, bytes]]) -> None: ...
    def put_one(self, key: str, value: bytes) -> None: ...
    def delete_many(self, keys: Sequence[str]) -> None: ...
    def get_one(self, key: str) -> bytes | None: ...
    def list_keys(self, prefix: str) -> Iterator[tuple[str, str | None]]: ...
    def close(self) -> None: ...


def drifted(target: Target, state: TargetState) -> str | None:
    """Why the target is not what this machine last pushed to it (its manifest is gone or another), or
    ``None``. Nothing recorded yet is no drift: the push writes everything."""
    recorded = state.hashes.get(keys.MANIFEST)
    if recorded is None:
        return None
    live = target.get_one(keys.MANIFEST)
    if live is None:
        return "the target has no pz1:manifest (reset, emptied, or another namespace)"
    if digest(live) != recorded:
        return f"the target's pz1:manifest is not the one last pushed from here (it names {_generation(live)})"
    return None


def _generation(manifest: bytes) -> str | None:
    try:
        gen = codec.decode(manifest, expect="manifest").data.get("generation")
    except DecodeError:
        return None
    return gen if isinstance(gen, str) else None


def resync(target: Target, state_dir: Path, *, out: TextIO = sys.stderr) -> TargetState:
    """Rebuild the target's pushed state from the target itself: its keys with the digests their metadata
    carries (a key written without one is rewritten by the next push), its manifest's generation last."""
    paths = Paths.of(state_dir, target.name)
    state = TargetState()
    unknown = 0
    for key, value_digest in target.list_keys(f"{keys.PREFIX}:"):
        state.hashes[key] = value_digest or "?"
        unknown += value_digest is None
    manifest = target.get_one(keys.MANIFEST)
    active = None
    if manifest is not None:
        state.hashes[keys.MANIFEST] = digest(manifest)
        active = _generation(manifest)
        paths.manifests.mkdir(parents=True, exist_ok=True)
        if active:
            (paths.manifests / f"{active}.msgpack").write_bytes(manifest)
    gens = sorted({g for g in map(generation_of, state.hashes) if g} - {active})
    state.generations = [*gens, active] if active else gens
    state.save(paths.state)
    paths.journal.unlink(missing_ok=True)
    print(f"re-synced {target.name}: {len(state.hashes)} keys ({unknown} without a digest: rewritten by the "
          f"next push); generations {', '.join(state.generations) or '-'}", file=out)
    return state


@dataclass(frozen=True)
class Paths:
    state: Path
    journal: Path
    manifests: Path   # the manifest record of each pushed generation, for rollback

    @classmethod
    def of(cls, state_dir: Path, target: str) -> Paths:
        d = state_dir / target
        return cls(d / "state.json", d / "journal.jsonl", d / "manifests")


@contextmanager
def target_lock(paths: Paths) -> Iterator[None]:
    """One writer per target at a time (push, rollback, refresh): the others wait their turn."""
    paths.state.parent.mkdir(parents=True, exist_ok=True)
    with (paths.state.parent / "lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def replay(state: TargetState, journal: Path) -> int:
    """Apply confirmed operations from an interrupted push; a torn last line (crash mid-write) is ignored."""
    if not journal.exists():
        return 0
    n = 0
    for line in journal.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if entry["op"] == "put":
            state.hashes.update(entry["hashes"])
        elif entry["op"] == "delete":
            for k in entry["keys"]:
                state.hashes.pop(k, None)
        elif entry["op"] == "generations":
            state.generations = entry["generations"]
        n += 1
    return n


def _log(journal: TextIO, entry: dict[str, object]) -> None:
    journal.write(json.dumps(entry) + "\n")
    journal.flush()
    os.fsync(journal.fileno())  # confirmed means on disk before the next request goes out


def planned(build: Build, state_dir: Path, name: str, out: TextIO,
            partial: bool = False) -> tuple[Paths, TargetState, Plan]:
    """The target's last pushed state, with any interrupted push replayed, and the plan from there."""
    paths = Paths.of(state_dir, name)
    state = TargetState.load(paths.state)
    resumed = replay(state, paths.journal)
    plan = make_plan(build, state, partial)
    print(f"push {build.generation} -> {name}: {plan.summary()}"
          + (f" (resuming: {resumed} confirmed step(s) from an interrupted push)" if resumed else ""), file=out)
    return paths, state, plan


def dry_run(build: Build, state_dir: Path, name: str, *, out: TextIO = sys.stderr) -> int:
    """Print the plan (keys to add, change, delete; bytes; requests) and send nothing."""
    _, _, plan = planned(build, state_dir, name, out)
    print(f"dry run: {len(list(plan.batches(build)))} write request(s), {len(list(plan.delete_batches()))} "
          f"delete request(s), {'1 manifest write' if plan.flip else 'no manifest write'}; nothing sent", file=out)
    for label, items in (("write", plan.writes), ("delete", plan.deletes)):
        for k in items[:10]:
            print(f"  {label} {k}", file=out)
        if len(items) > 10:
            print(f"  ... and {len(items) - 10} more to {label}", file=out)
    return OK


def push(build: Build, target: Target, state_dir: Path, *, out: TextIO = sys.stderr, partial: bool = False,
         locked: bool = False, sync: bool = False) -> int:
    """Push ``build`` (``partial``: some records only, see ``make_plan``); ``locked``: the caller holds the
    target's lock already; ``sync``: re-sync the pushed state from the target first (``--resync``)."""
    with nullcontext() if locked else target_lock(Paths.of(state_dir, target.name)):
        try:
            if sync:
                resync(target, state_dir, out=out)
            else:
                why = drifted(target, TargetState.load(Paths.of(state_dir, target.name).state))
                seeded = getattr(target, "seeded_by_the_project", None)
                if why and seeded is not None and seeded():
                    # Not drift: the project's own seeding (make seed) wrote local KV. Read it back, push over it.
                    print(f"{target.name} holds the demo seed the project loaded (make seed), not what was last pushed "
                          "from here: reading its keys back first", file=out)
                    resync(target, state_dir, out=out)
                elif why:
                    print(f"error: {why}. Nothing was pushed: what this machine recorded is not what {target.name} "
                          "holds. Rerun with --resync to read the target's keys back and push what differs.",
                          file=out)
                    target.close()
                    return BAD_INPUT
        except PushError as exc:
            print(f"push incomplete: {exc} (reading the target). Nothing was written.", file=out)
            target.close()
            return PARTIAL
        return _push(build, target, state_dir, out, partial)


def _push(build: Build, target: Target, state_dir: Path, out: TextIO, partial: bool) -> int:
    paths, state, plan = planned(build, state_dir, target.name, out, partial)
    write_batches = list(plan.batches(build))
    paths.manifests.mkdir(parents=True, exist_ok=True)
    if keys.MANIFEST in build.records:
        (paths.manifests / f"{build.generation}.msgpack").write_bytes(build.records[keys.MANIFEST])
    try:
        with paths.journal.open("a") as journal, tqdm(total=len(plan.writes) + len(plan.deletes), unit="key",
                                                       file=out, disable=None, desc="push") as bar:
            for batch in write_batches:
                target.put_many([(k, build.records[k]) for k in batch])
                _log(journal, {"op": "put", "hashes": {k: digest(build.records[k]) for k in batch}})
                bar.update(len(batch))
            if plan.flip:
                target.put_one(keys.MANIFEST, build.records[keys.MANIFEST])
                _log(journal, {"op": "put", "hashes": {keys.MANIFEST: digest(build.records[keys.MANIFEST])}})
            _log(journal, {"op": "generations", "generations": plan.generations_after})
            for batch in plan.delete_batches():
                target.delete_many(batch)
                _log(journal, {"op": "delete", "keys": batch})
                bar.update(len(batch))
    except PushError as exc:
        if exc.status in (401, 403):
            print(f"push refused: {exc}. Check CLOUDFLARE_API_TOKEN and its KV write permission.", file=out)
            return BAD_INPUT
        print(f"push incomplete: {exc}. Confirmed work is journaled; rerun the same command to resume.", file=out)
        return PARTIAL
    finally:
        target.close()
    replay(state, paths.journal)
    state.save(paths.state)
    paths.journal.unlink()
    for old in paths.manifests.glob("*.msgpack"):
        if old.stem not in state.generations:
            old.unlink()
    print(f"push done: {plan.added} added, {plan.changed} changed, {len(plan.deletes)} deleted in "
          f"{target.requests} request(s); active generation {state.generations[-1] if state.generations else '-'}",
          file=out)
    return OK


def rollback(target: Target, state_dir: Path, *, out: TextIO = sys.stderr) -> int:
    """Flip pz1:manifest back to the previous generation (whose records are still kept)."""
    with target_lock(Paths.of(state_dir, target.name)):
        return _rollback(target, state_dir, out)


def _rollback(target: Target, state_dir: Path, out: TextIO) -> int:
    paths = Paths.of(state_dir, target.name)
    state = TargetState.load(paths.state)
    if paths.journal.exists():
        print("error: a push to this target is incomplete; rerun it before rolling back", file=out)
        target.close()
        return BAD_INPUT
    if len(state.generations) < 2:
        print("error: no previous generation to roll back to", file=out)
        target.close()
        return BAD_INPUT
    previous, current = state.generations[-2], state.generations[-1]
    manifest = (paths.manifests / f"{previous}.msgpack").read_bytes()
    try:
        target.put_one(keys.MANIFEST, manifest)
    except PushError as exc:
        print(f"rollback failed: {exc}", file=out)
        return PARTIAL
    finally:
        target.close()
    state.hashes[keys.MANIFEST] = digest(manifest)
    state.generations = [current, previous]  # the rolled-back one stays, so rolling forward is a push away
    state.save(paths.state)
    print(f"rollback: active generation {previous} (was {current})", file=out)
    return OK


def forget(state_dir: Path, target: str, key: str) -> None:
    """Drop a key from a target's pushed state (after an erase deleted it there)."""
    paths = Paths.of(state_dir, target)
    if paths.state.exists():
        state = TargetState.load(paths.state)
        state.hashes.pop(key, None)
        state.save(paths.state)


__all__ = ["BAD_INPUT", "OK", "PARTIAL", "Paths", "Plan", "Target", "drifted", "dry_run", "forget", "push",
           "resync", "rollback", "target_lock"]
