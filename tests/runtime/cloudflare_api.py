"""A stand-in for Cloudflare's KV REST API (the hosted API is out of reach in tests), faithful to the published
contract: Bearer auth, bulk write (<= 10,000 pairs, <= 100 MB, base64 values, metadata), bulk delete,
single-key write and read, key listing (prefix, cursor, at most 1,000 a page, with metadata), the v4 response
envelope, 429 with Retry-After. Failures are scripted per request."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_PAIRS, MAX_BODY = 10_000, 100_000_000


def envelope(result: Any = None, errors: list[dict[str, Any]] | None = None, status: int = 200,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": not errors, "errors": errors or [], "messages": [], "result": result},
                        status, headers=headers)


class FakeKVApi:
    def __init__(self, token: str, account: str, namespace: str) -> None:
        self.token, self.account, self.namespace = token, account, namespace
        self.store: dict[str, bytes] = {}
        self.metadata: dict[str, Any] = {}
        self.writes: Counter[str] = Counter()
        self.requests = 0
        self.script: list[tuple[Any, ...]] = []   # next requests' fates: ("status", code, headers) | ("hang", s)
        prefix = "/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}"
        self.app = Starlette(routes=[
            Route(prefix + "/bulk", self.bulk_write, methods=["PUT"]),
            Route(prefix + "/bulk/delete", self.bulk_delete, methods=["POST"]),
            Route(prefix + "/values/{key:path}", self.value, methods=["PUT", "GET"]),
            Route(prefix + "/keys", self.list_keys, methods=["GET"]),
        ])

    async def _gate(self, request: Request) -> Response | None:
        self.requests += 1
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return envelope(errors=[{"code": 10000, "message": "Authentication error"}], status=401)
        if (request.path_params["account"], request.path_params["namespace"]) != (self.account, self.namespace):
            return envelope(errors=[{"code": 10013, "message": "namespace not found"}], status=404)
        if self.script:
            fate = self.script.pop(0)
            if fate[0] == "hang":
                await asyncio.sleep(fate[1])
            else:
                return envelope(errors=[{"code": 10429 if fate[1] == 429 else 10500, "message": "scripted"}],
                                status=fate[1], headers=fate[2] if len(fate) > 2 else None)
        return None

    async def bulk_write(self, request: Request) -> Response:
        if (denied := await self._gate(request)) is not None:
            return denied
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return envelope(errors=[{"code": 10011, "message": "request body too large"}], status=413)
        pairs = json.loads(raw)
        if len(pairs) > MAX_PAIRS:
            return envelope(errors=[{"code": 10007, "message": "too many pairs"}], status=400)
        for p in pairs:
            self.store[p["key"]] = base64.b64decode(p["value"]) if p.get("base64") else p["value"].encode()
            self.metadata[p["key"]] = p.get("metadata")
            self.writes[p["key"]] += 1
        return envelope({"successful_key_count": len(pairs), "unsuccessful_keys": []})

    async def bulk_delete(self, request: Request) -> Response:
        if (denied := await self._gate(request)) is not None:
            return denied
        doomed = json.loads(await request.body())
        if len(doomed) > MAX_PAIRS:
            return envelope(errors=[{"code": 10007, "message": "too many keys"}], status=400)
        for k in doomed:
            self.store.pop(k, None)
            self.metadata.pop(k, None)
        return envelope({"successful_key_count": len(doomed), "unsuccessful_keys": []})

    async def value(self, request: Request) -> Response:
        if (denied := await self._gate(request)) is not None:
            return denied
        key = request.path_params["key"]
        if request.method == "GET":
            if key not in self.store:
                return envelope(errors=[{"code": 10009, "message": "key not found"}], status=404)
            return Response(self.store[key], media_type="application/octet-stream")
        self.store[key] = await request.body()
        self.metadata[key] = None  # a plain value write (not multipart) carries no metadata
        self.writes[key] += 1
        return envelope({})

    async def list_keys(self, request: Request) -> Response:
        if (denied := await self._gate(request)) is not None:
            return denied
        prefix = request.query_params.get("prefix", "")
        limit = min(int(request.query_params.get("limit", "1000")), 1000)
        start = int(request.query_params.get("cursor") or 0)
        names = sorted(k for k in self.store if k.startswith(prefix))
        page = names[start:start + limit]
        more = start + limit < len(names)
        result = [{"name": k, **({"metadata": self.metadata[k]} if self.metadata.get(k) is not None else {})}
                  for k in page]
        return JSONResponse({"success": True, "errors": [], "messages": [], "result": result,
                             "result_info": {"count": len(page), "cursor": str(start + limit) if more else ""}})
