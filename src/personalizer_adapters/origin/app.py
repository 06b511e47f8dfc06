"""The origin Lambda: answers the edge's misses with v1 records computed by the batch's own code.

POST /v1/resolve  {"key": "<v1 key>"}  ->  200 application/x-msgpack (one v1 record), 404 when the origin
does not know it either (the edge caches that briefly and answers anonymously), 400 for a bad body or key,
401 without the shared secret.
POST /v1/ingest   {"beacons": [<queue message>, ...]}  ->  200 {"stored", "duplicates", "refused",
"rejected", "bad_beacons"}: the edge's event batches, checked again and appended once (idempotent).
Served by uvicorn locally, by Mangum on AWS Lambda (lambda_handler.py).
"""

from __future__ import annotations

import hmac
import logging
import os
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from personalizer import jsontext, keys
from personalizer.digits import ascii_digits
from personalizer_adapters.batch.model import Model
from personalizer_adapters.store import DATABASE_ENV, StoreUnavailable, open_stores
from personalizer_adapters.store.base import ReadOnlyLog

from .artifacts import LiveModel, ModelSource, data_dir
from .history import person_profile

log = logging.getLogger("personalizer.origin")
SECRET_HEADER = "x-pz-origin-secret"
MAX_BODY = 4096
MAX_INGEST_BODY = 16 * 1024 * 1024  # 100 queue messages of at most one 64 KiB beacon each, with room
MAX_INGEST_BEACONS = 1000
MSGPACK = "application/x-msgpack"
INGEST_RETRY_AFTER_S = 30  # a 503 from ingest: when the queue may deliver again
RESOLVE_DEADLINE_ENV = "PZ_RESOLVE_DEADLINE_MS"
RESOLVE_DEADLINE_MS = 150  # the edge's ORIGIN_TIMEOUT_MS: a miss read slower than that is answered for nobody


def resolve_deadline_ms() -> int:
    """How long a miss may take the store (``PZ_RESOLVE_DEADLINE_MS``; set it to the edge's ORIGIN_TIMEOUT_MS)."""
    raw = os.environ.get(RESOLVE_DEADLINE_ENV, "")
    if not raw:
        return RESOLVE_DEADLINE_MS
    if not ascii_digits(raw) or not 10 <= int(raw) <= 60_000:
        raise ValueError(f"{RESOLVE_DEADLINE_ENV} must be milliseconds between 10 and 60000, not {raw!r}")
    return int(raw)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers={"cache-control": "no-store"})


class Origin:
    """The origin's data: model artifacts (read only: from ``data_dir``, else the database's) and the stores of
    one generation: the SQLite files in ``data_dir``, or the database at ``database`` (then nothing local is
    written, and without ``data_dir`` nothing local is read)."""

    def __init__(self, data_dir: Path | None, database: str | None = None) -> None:
        if data_dir is None and not database:
            raise ValueError("name the origin data directory, or a database that holds the model artifacts")
        stores = open_stores(data_dir or Path("."), database)
        self.stores, self.store, self.log, self.where = stores, stores.profiles, stores.log, stores.where
        # The miss path's reads end within the edge's budget (an answer later than that is not waited for);
        # ingest keeps the store's longer deadline (the queue waits for it).
        self.reads = stores if stores.local else open_stores(Path("."), database, deadline_ms=resolve_deadline_ms())
        self.live = LiveModel(ModelSource(data_dir, self.store))

    @property
    def model(self) -> Model:
        return self.live.current()

    def store_generation(self) -> str | None:
        """The generation of the store's snapshot, which should be the artifacts' (a build writes both)."""
        try:
            return self.store.generation()
        except StoreUnavailable:
            return None

    def resolve(self, key: str) -> bytes | None:
        kind, gen, ident = keys.parse(key)
        model = self.model
        if kind == "profile":  # the store's history and the event log's newer events, as refresh computes it
            assert ident is not None
            return person_profile(model, self.reads.person_history("customer", ident, model.index), ident)
        if kind in ("segment", "item", "popular", "banners") and gen == model.generation:
            return self.reads.profiles.record(key)
        return None


def create_app(data_dir: Path | None, secret: str, database: str | None = None) -> Starlette:
    if len(secret) < 16:
        raise ValueError("ORIGIN_SECRET must be at least 16 characters")
    origin = Origin(data_dir, database)
    expected = secret.encode()

    async def guarded_body(request: Request, limit: int) -> bytes | Response:
        """The body of an authorised request, or the error answer: the secret first, then the size,
        declared and then as streamed (a lying or absent Content-Length)."""
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            return error(401, "unauthorized", f"missing or wrong {SECRET_HEADER}")
        declared = request.headers.get("content-length", "")
        if declared and (not ascii_digits(declared) or int(declared) > limit):
            return error(413, "too_large", f"body over {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return error(413, "too_large", f"body over {limit} bytes")
        return b"".join(chunks)

    async def resolve(request: Request) -> Response:
        stats: Counter[str] = request.app.state.stats
        stats["requests"] += 1
        body = await guarded_body(request, MAX_BODY)
        if isinstance(body, Response):
            return body
        parsed = _json(body)
        key = parsed.get("key") if isinstance(parsed, dict) else None
        if not isinstance(key, str):
            return error(400, "bad_body", 'body must be JSON: {"key": "..."}')
        try:
            value = await run_in_threadpool(origin.resolve, key)
        except ValueError as exc:
            return error(400, "bad_key", str(exc))
        except StoreUnavailable as exc:  # at once, within the edge's budget: it answers from the next tier
            log.warning("resolve failed error=%s", exc)
            stats["unavailable"] += 1
            return error(503, "unavailable", "the store is not available")
        if value is None:
            stats["not_found"] += 1
            return error(404, "not_found", "no such record")
        stats["found"] += 1
        return Response(value, media_type=MSGPACK, headers={"cache-control": "no-store"})

    async def ingest(request: Request) -> Response:
        body = await guarded_body(request, MAX_INGEST_BODY)
        if isinstance(body, Response):
            return body
        try:
            counts = await run_in_threadpool(_ingest, origin, body)
        except (ReadOnlyLog, sqlite3.OperationalError, StoreUnavailable) as exc:  # nothing stored: delivered again
            log.warning("ingest not stored error=%s", type(exc).__name__)
            resp = error(503, "unavailable", "events not stored here, deliver them again later")
            resp.headers["retry-after"] = str(INGEST_RETRY_AFTER_S)
            return resp
        if counts is None:
            return error(400, "bad_body", f'body must be JSON: {{"beacons": [...]}}, at most {MAX_INGEST_BEACONS}')
        stats: Counter[str] = request.app.state.stats
        stats.update({f"events_{k}": v for k, v in counts.items()})
        return JSONResponse(counts, headers={"cache-control": "no-store"})

    async def healthz(request: Request) -> Response:
        """Liveness, and whether the artifacts and the store's snapshot are of the same generation (a build
        writes both; until the new artifacts are deployed, shared records of the new one are not served)."""
        stored = await run_in_threadpool(origin.store_generation)
        serving = origin.model.generation
        return JSONResponse({"status": "ok", "generation": serving, "store_generation": stored,
                             "in_step": stored in (None, serving), "artifacts": origin.live.source.where})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        resp = error(exc.status_code, code, str(exc.detail))
        resp.headers.update(exc.headers or {})
        return resp

    app = Starlette(routes=[Route("/v1/resolve", resolve, methods=["POST"]),
                            Route("/v1/ingest", ingest, methods=["POST"]), Route("/healthz", healthz)],
                    exception_handlers={HTTPException: http_error})
    app.state.stats = Counter()
    return app


def _json(body: bytes) -> Any:
    """The parsed body, ``None`` when it is not JSON (deep nesting included: a bad body, not a 500)."""
    try:
        return jsontext.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and jsontext.TooDeep are ValueErrors
        return None


def _ingest(origin: Origin, body: bytes) -> dict[str, int] | None:
    parsed = _json(body)
    beacons = parsed.get("beacons") if isinstance(parsed, dict) else None
    if not isinstance(beacons, list) or len(beacons) > MAX_INGEST_BEACONS:
        return None
    return origin.log.ingest(beacons, origin.store.erased).as_json()


def app_from_env() -> Starlette:
    """The app as deployed: the shared secret from ``ORIGIN_SECRET``, the store at ``PZ_DATABASE_URL`` (else
    SQLite files in the data directory), the model artifacts from ``PZ_ORIGIN_DATA`` (read only; unset with a
    database: the database's, followed as builds replace them)."""
    database = os.environ.get(DATABASE_ENV) or None
    return create_app(data_dir(os.environ.get("PZ_ORIGIN_DATA"), database), os.environ["ORIGIN_SECRET"], database)
