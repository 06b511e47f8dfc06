"""The local KV target: the storage the offline runtime and `wrangler dev`/`wrangler kv --local` read."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .cloudflare import PushError
from .plan import digest_metadata, metadata_digest

ROOT = Path(__file__).resolve().parents[3]


class LocalKV:
    """Writes through Miniflare (binary-safe; wrangler 4.86's `kv bulk put --local` is not), one batch a line."""

    def __init__(self, persist: Path) -> None:
        self.name = "local"
        self.requests = 0
        self.persist = persist.resolve()
        # Resolved here: the helper runs from the project's directory, the path is the caller's.
        helper = [str(ROOT / "tests/runtime/kvapply.mjs"), "--persist", str(persist.resolve())]
        self._proc = subprocess.Popen(["node", *helper],
                                      cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._call(None)

    def _call(self, request: dict[str, Any] | None) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if request is not None:
            self.requests += 1
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise PushError("local KV helper exited")
        answer = json.loads(line)
        if not (answer.get("ok") or answer.get("ready")):
            raise PushError(f"local KV: {answer.get('error')}")
        return dict(answer)

    def seeded_by_the_project(self) -> bool:
        """Whether local KV holds what the project's own seeding wrote (`make dev`, `make seed`: kvseed.mjs keeps
        the sha256 of the manifest it wrote in ``.seeded-manifest``), not a build pushed from elsewhere."""
        import hashlib

        marker = self.persist / ".seeded-manifest"
        live = self.get_one("pz1:manifest")
        return marker.exists() and live is not None and \
            marker.read_text().strip() == hashlib.sha256(live).hexdigest()

    def put_many(self, pairs: Sequence[tuple[str, bytes]]) -> None:
        self._call({"op": "put", "pairs": [{"key": k, "value": base64.b64encode(v).decode(), "base64": True,
                                            "metadata": digest_metadata(v)} for k, v in pairs]})

    def put_one(self, key: str, value: bytes) -> None:
        self.put_many([(key, value)])

    def delete_many(self, keys: Sequence[str]) -> None:
        self._call({"op": "delete", "keys": list(keys)})

    def get_one(self, key: str) -> bytes | None:
        value = self._call({"op": "get", "key": key}).get("value")
        return None if value is None else base64.b64decode(value)

    def list_keys(self, prefix: str) -> Iterator[tuple[str, str | None]]:
        cursor = None
        while True:
            page = self._call({"op": "list", "prefix": prefix, "cursor": cursor})
            for item in page["keys"]:
                yield item["name"], metadata_digest(item.get("metadata"))
            cursor = page.get("cursor")
            if not cursor:
                return

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(30)
        if self._proc.stdout:
            self._proc.stdout.close()
