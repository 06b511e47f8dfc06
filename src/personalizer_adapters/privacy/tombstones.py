"""The one durable list of erased people, which every build, seed, push and the origin consult.

A privacy erasure must last: wherever a build writes its output, whichever build directory a push reads,
the person stays out. So the list does not live inside any build's output but in one file (by default
``.personalizer/tombstones.txt``; ``PZ_TOMBSTONES`` or ``--tombstones`` name another), one id a line,
appended and fsynced before anything is deleted. To carry it to another batch host, copy the file (it only
grows; merging two copies is concatenating them).
"""

from __future__ import annotations

import os
from pathlib import Path

from personalizer import codec, keys

HEADER = "# erased people, one id a line: every personalizer build, seed, push and origin leaves them out\n"


def default_path() -> Path:
    return Path(os.environ.get("PZ_TOMBSTONES") or ".personalizer/tombstones.txt").resolve()


class Tombstones:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    def load(self) -> frozenset[str]:
        """Everyone erased so far (an absent file: no one)."""
        if not self.path.exists():
            return frozenset()
        return frozenset(line.strip() for line in self.path.read_text().splitlines()
                         if line.strip() and not line.startswith("#"))

    def add(self, person: str) -> None:
        """Record an erasure durably (on disk before it returns); idempotent."""
        if not keys.is_valid_id(person):
            raise ValueError(f"invalid person id {person!r}")
        if person in self.load():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with self.path.open("a") as f:
            f.write((HEADER if new else "") + person + "\n")
            f.flush()
            os.fsync(f.fileno())


def person_keys(people: frozenset[str] | set[str]) -> set[str]:
    """Every KV key that may hold something about these people (their customer and visitor profiles)."""
    return {k for p in people for k in (keys.profile(p), keys.visitor(p))}


def erased_marks(people: frozenset[str] | set[str]) -> dict[str, bytes]:
    """What an erased person's keys hold from the erasure on: the mark of it, the same bytes every time (so a
    push writes it once), no data."""
    mark = codec.erased_mark()
    return dict.fromkeys(sorted(person_keys(people)), mark)
