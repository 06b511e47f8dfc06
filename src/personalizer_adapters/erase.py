"""`personalizer erase --person ID`: a privacy request, done everywhere the person's data lives. Idempotent."""

from __future__ import annotations

from pathlib import Path

from personalizer import keys

from .push import Target, forget
from .store import ProfileStore


def erase_person(person: str, target: Target, origin_data: Path, state_dir: Path) -> str:
    """Delete the KV profile, the profile-store row and events, and record a tombstone so no build brings
    the person back. The tombstone is written first: a crash half-way can only leave less data, never more."""
    key = keys.profile(person)
    store = ProfileStore(origin_data / "store.sqlite")
    events = store.erase(person)
    try:
        target.delete_many([key])
    finally:
        target.close()
    forget(state_dir, target.name, key)
    return (f"erased {person}: tombstone recorded; {events} event(s) and the profile-store row removed; "
            f"KV key {key} deleted on {target.name}")
