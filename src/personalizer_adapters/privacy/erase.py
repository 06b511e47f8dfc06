"""`personalizer erase --person ID`: a privacy request, done everywhere the person's data lives. Idempotent.

Order matters: the durable tombstone first (so a crash half-way can only leave less data, never bring the
person back), then the origin's store, then every KV key about them, then the build artifacts on this
machine that still hold them (kv.json, manifest.json, the profile digests, the exported inputs).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from personalizer_adapters.batch.seed import bulk_json_lines, replace_file
from personalizer_adapters.kv.plan import read_bulk
from personalizer_adapters.kv.push import Target, forget
from personalizer_adapters.store import open_stores

from .tombstones import Tombstones, erased_marks, person_keys


def scrub_build(directory: Path, people: frozenset[str]) -> int:
    """Remove ``people`` from a build's artifacts in ``directory``; returns how many entries went."""
    gone = 0
    drop = person_keys(people)
    kv = directory / "kv.json"
    if kv.exists():
        pairs = dict(read_bulk(kv))
        if drop & set(pairs):
            gone += len(drop & set(pairs))
            replace_file(kv, bulk_json_lines({k: v for k, v in pairs.items() if k not in drop}))
    manifest = directory / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        before = len(data.get("records", {}))
        data["records"] = {k: h for k, h in data.get("records", {}).items() if k not in drop}
        if len(data["records"]) != before:
            gone += before - len(data["records"])
            replace_file(manifest, [json.dumps(data, indent=0)])
    digests = directory / "profiles.digests.json"
    if digests.exists():
        data = json.loads(digests.read_text())
        if people & set(data):
            gone += len(people & set(data))
            replace_file(digests, [json.dumps({k: v for k, v in data.items() if k not in people}, sort_keys=True)])
    for name, column in (("events.csv", "shopper"), ("shoppers.csv", "id")):
        path = directory / "inputs" / name
        if not path.exists():
            continue
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows or column not in rows[0]:
            continue
        at = rows[0].index(column)
        kept_rows = [rows[0]] + [r for r in rows[1:] if len(r) <= at or r[at] not in people]
        if len(kept_rows) != len(rows):
            gone += len(rows) - len(kept_rows)
            replace_file(path, _csv_lines(kept_rows))
    return gone


def _csv_lines(rows: list[list[str]]) -> list[str]:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return [buf.getvalue()]


def erase_person(person: str, target: Target, origin_data: Path, state_dir: Path,
                 tombstones: Tombstones, builds: list[Path], database: str | None = None) -> str:
    """Tombstone, profile-store row and events, KV keys, build artifacts; a report of what went.

    ``database``: the PostgreSQL store (else the SQLite files in ``origin_data``). Its tombstone commits with the
    profile store's rows in one transaction, before the event log's rows go: ingest refuses the person from that
    commit on, on every origin instance."""
    tombstones.add(person)
    events = beacons = 0
    if database or origin_data.exists():
        stores = open_stores(origin_data, database)
        events = stores.profiles.erase(person)
        beacons = stores.log.erase(person)
    marks = erased_marks({person})
    kv_keys = sorted(marks)
    try:  # the person's keys now hold the mark of the erasure: the edge serves them as nobody from here on
        target.put_many(sorted(marks.items()))
    finally:
        target.close()
    for key in kv_keys:
        forget(state_dir, target.name, key)
    scrubbed = {str(d): scrub_build(d, frozenset({person})) for d in builds if d.exists()}
    return (f"erased {person}: tombstone in {tombstones.path}; {events} event(s) and the profile-store row "
            f"removed; {beacons} beacon event(s) removed from the event log (later ones are refused); "
            f"KV keys {', '.join(kv_keys)} replaced by the erasure's mark on {target.name}; build artifacts scrubbed: "
            + (", ".join(f"{d} ({n} entries)" for d, n in scrubbed.items()) or "none given"))
