"""Where a process finds the generation's model artifacts (``model.json``, ``model.npz``): a directory (the
origin's package, or a path), or the store, which every build fills with its snapshot.

With a database and no directory named, an origin needs nothing but ``PZ_DATABASE_URL``: it loads the model
from the database and follows each new build there (checked at most every ``CHECK_S`` seconds), so a nightly
build reaches every origin instance without a redeploy. The origin, ``refresh`` and ``report`` share this.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from personalizer_adapters.batch.model import ARTIFACT_META, Model
from personalizer_adapters.store import StoreUnavailable
from personalizer_adapters.store.base import ProfileData

DEFAULT_DATA = Path("kv-seed/out/origin")  # the demo's origin data (make seed)
CHECK_S = 30.0  # how often an origin whose model comes from the store looks for a newer generation there


class NoArtifacts(RuntimeError):
    """No model artifacts where they were looked for."""


def data_dir(data: str | None, database: str | None) -> Path | None:
    """The directory named on the command line or in ``PZ_ORIGIN_DATA``; none named: the demo's, unless a
    database is named (then the artifacts come from it)."""
    if data:
        return Path(data)
    return None if database else DEFAULT_DATA


class ModelSource:
    """The artifacts of a directory, else the store's: ``load`` the model, ``generation`` of the newest there."""

    def __init__(self, directory: Path | None, store: ProfileData) -> None:
        self.directory, self.store = directory, store
        self.where = str(directory) if directory is not None else "the store"

    def load(self) -> Model:
        if self.directory is not None:
            try:
                return Model.load(self.directory)
            except FileNotFoundError as exc:
                raise NoArtifacts(f"no model artifacts in {self.directory} ({exc.filename}): run a build, or "
                                  "name the directory that holds them") from exc
        files = self.store.artifacts()
        if not files:
            raise NoArtifacts("the store holds no model artifacts: run `personalizer build --database ...` (or "
                              "seed) into it first, or name a directory that holds them (--data)")
        return Model.from_files(files)

    def generation(self) -> str | None:
        """The generation the source holds now (a build may have replaced it since ``load``)."""
        if self.directory is not None:
            try:
                return str(json.loads((self.directory / ARTIFACT_META).read_bytes())["generation"])
            except (OSError, ValueError, KeyError):
                return None
        return self.store.generation()


class LiveModel:
    """The model an origin serves: loaded once, then replaced when its source (the store) holds a newer build,
    looked for at most every ``check_s`` seconds. A store that cannot be reached keeps the model served."""

    def __init__(self, source: ModelSource, check_s: float = CHECK_S) -> None:
        self.source, self.check_s = source, check_s
        self.model = source.load()
        self._next = time.monotonic() + check_s
        self._lock = threading.Lock()

    def current(self) -> Model:
        if self.source.directory is not None or time.monotonic() < self._next:
            return self.model
        with self._lock:
            if time.monotonic() >= self._next:
                self._next = time.monotonic() + self.check_s
                try:
                    if self.source.generation() not in (None, self.model.generation):
                        self.model = self.source.load()
                except (StoreUnavailable, NoArtifacts, KeyError, ValueError):
                    pass  # the model served stays; the next check tries again
        return self.model
