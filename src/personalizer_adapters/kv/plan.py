"""Push planning: what a build changes on a KV target, in safe order, in batches the KV API accepts.

Order of a push (so the edge never sees a half-written generation as active):
  1. ``write``   every added or changed key except the manifest (new generation's shared records,
                 profiles, inventory), in bulk batches;
  2. ``flip``    ``pz1:manifest`` alone, once everything it points to is confirmed;
  3. ``delete``  keys gone from the build, and generations older than the last two (rollback keeps one).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from personalizer import keys

MAX_PAIRS = 10_000                 # Cloudflare KV bulk write/delete: pairs per request
MAX_REQUEST_BYTES = 100_000_000    # and bytes per request (the JSON body, base64 included)
KEEP_GENERATIONS = 2               # the active one and the one `rollback` returns to


def digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()[:32]


def digest_metadata(value: bytes) -> dict[str, str]:
    """The KV metadata a push writes with each value: its digest, so a listing tells what a key holds."""
    return {"pz": digest(value)}


def metadata_digest(metadata: object) -> str | None:
    """The digest a key's metadata carries (``digest_metadata``), ``None`` if it carries none."""
    found = metadata.get("pz") if isinstance(metadata, dict) else None
    return found if isinstance(found, str) else None


def read_bulk(path: Path) -> Iterator[tuple[str, bytes]]:
    """Pairs of a wrangler bulk file. Files written one pair per line (ours) stream line by line; any other
    layout of the same JSON is parsed whole."""
    with path.open() as f:
        first = f.readline()
        if first.strip() != "[":
            pairs = json.loads(first + f.read())
        else:
            pairs = (json.loads(line.rstrip().rstrip(",")) for line in f if line.strip() not in ("", "]"))
        for p in pairs:
            yield p["key"], base64.b64decode(p["value"]) if p.get("base64") else p["value"].encode()


@dataclass(frozen=True)
class Build:
    """A build's output: records by key and the generation its manifest activates."""

    generation: str
    records: dict[str, bytes]

    @classmethod
    def load(cls, directory: Path) -> Build:
        records = dict(read_bulk(directory / "kv.json"))
        return cls((directory / "generation.txt").read_text().strip(), records)

    def manifest(self) -> dict[str, str]:
        return {k: digest(v) for k, v in self.records.items()}

    def without(self, people: frozenset[str]) -> Build:
        """The build with every record about ``people`` (tombstones) replaced by an erasure's mark, which holds
        nothing about them: a push writes the marks, so the edge serves them as nobody (see codec.ERASED)."""
        from personalizer_adapters.privacy.tombstones import erased_marks

        marks = erased_marks(people)
        return Build(self.generation, {**{k: v for k, v in self.records.items() if k not in marks}, **marks}) \
            if marks else self


@dataclass
class TargetState:
    """What was last pushed to a target: key -> content hash, and the generations pushed, newest last."""

    hashes: dict[str, str] = field(default_factory=dict)
    generations: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> TargetState:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(dict(data["hashes"]), list(data["generations"]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"hashes": self.hashes, "generations": self.generations}))
        tmp.replace(path)  # atomic: a crash leaves the old state or the new one, never half


def generation_of(key: str) -> str | None:
    try:
        return keys.parse(key)[1]
    except ValueError:
        return None


@dataclass(frozen=True)
class Plan:
    writes: list[str]     # keys to write (added or changed), manifest excluded
    flip: bool            # whether pz1:manifest changes
    deletes: list[str]
    added: int
    changed: int
    unchanged: int
    write_bytes: int
    generations_after: list[str]

    def batches(self, build: Build) -> Iterator[list[str]]:
        """Write batches within the bulk API's limits (pairs and body bytes, base64 and JSON included)."""
        batch: list[str] = []
        size = 2
        for key in self.writes:
            item = len(key) + 4 * (len(build.records[key]) + 2) // 3 + 48  # {"key":..,"value":..,"base64":true},
            if batch and (len(batch) >= MAX_PAIRS or size + item > MAX_REQUEST_BYTES):
                yield batch
                batch, size = [], 2
            batch.append(key)
            size += item
        if batch:
            yield batch

    def delete_batches(self) -> Iterator[list[str]]:
        for i in range(0, len(self.deletes), MAX_PAIRS):
            yield self.deletes[i:i + MAX_PAIRS]

    def summary(self) -> str:
        return (f"{self.added} to add, {self.changed} to change, {len(self.deletes)} to delete, {self.unchanged} "
                f"unchanged; {self.write_bytes / 1e6:.1f} MB to write; manifest "
                f"{'flips' if self.flip else 'unchanged'}")


def make_plan(build: Build, state: TargetState, partial: bool = False) -> Plan:
    """Diff a build against what the target last received; only added and changed keys are written.

    ``partial``: the build holds some records only (a refresh's profiles): nothing is deleted, the manifest
    and the generations stay as they are.
    """
    new = build.manifest()
    writes = [k for k, h in new.items() if k != keys.MANIFEST and state.hashes.get(k) != h]
    added = sum(1 for k in writes if k not in state.hashes)
    if partial:
        return Plan(sorted(writes, key=_write_order), False, [], added, len(writes) - added,
                    len(new) - len(writes), sum(len(build.records[k]) for k in writes), list(state.generations))
    gens = [g for g in state.generations if g != build.generation] + [build.generation]
    keep = set(gens[-KEEP_GENERATIONS:])
    deletes = sorted(k for k in state.hashes if k not in new and generation_of(k) not in keep)
    write_bytes = sum(len(build.records[k]) for k in writes)
    flip = state.hashes.get(keys.MANIFEST) != new.get(keys.MANIFEST)
    unchanged = len(new) - len(writes) - (1 if keys.MANIFEST in new else 0)
    return Plan(sorted(writes, key=_write_order), flip, deletes, added, len(writes) - added, unchanged,
                write_bytes, gens[-KEEP_GENERATIONS:])


def _write_order(key: str) -> tuple[int, str]:
    """Shared generation records first, then inventory and profiles: deterministic, resumable."""
    return (0 if generation_of(key) else 1, key)
