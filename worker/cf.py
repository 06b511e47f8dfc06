"""Cloudflare adapters: the KV binding as the core's KV port, the clock, ids, and the env as config.

With ``worker/entry.py`` this is the only code that touches the Workers runtime.
"""

import asyncio
import json
import logging
import secrets
import time

from pyodide.ffi import create_proxy
from workers import fetch

from personalizer import Config, MissPath, parse_config
from personalizer.config import VARS

log = logging.getLogger("personalizer.worker")

class KVBinding:
    """``env.PERSONALIZATION`` (a KvNamespace behind the SDK's wrapper) as a ``KVReader``/``KVWriter``."""

    def __init__(self, binding):
        self._binding = binding

    async def get(self, key):
        value = await self._binding.get(key, "arrayBuffer")
        if value is None:
            return None
        # Copy out of the Wasm/JS buffer at once: a view can detach when the heap grows across an await.
        return bytes(value) if isinstance(value, memoryview | bytes | bytearray) else bytes(value.to_bytes())

    async def put(self, key, value, expiration_ttl=None):
        options = {"expirationTtl": expiration_ttl} if expiration_ttl else {}
        await self._binding.put(key, bytes(value), options)


class OriginError(Exception):
    def __init__(self, status):
        super().__init__(f"origin answered {status}")
        self.status = status


class OriginFetch:
    """The origin Lambda over HTTP (``fetch``): POST /v1/resolve with the shared secret."""

    def __init__(self, url, secret):
        self.url = url + "/v1/resolve"
        self.headers = {"content-type": "application/json", "x-pz-origin-secret": secret}

    async def resolve(self, key):
        response = await fetch(self.url, method="POST", headers=self.headers, body=json.dumps({"key": key}))
        if response.status == 404:
            return None
        if response.status != 200:
            raise OriginError(response.status)
        return bytes(await response.bytes())


def miss_path(config, kv, ctx, gate):
    """The miss path when an origin is configured, else ``None`` (misses go straight to the next tier)."""
    if not (config.origin_url and config.origin_secret):
        return None

    def defer(awaitable):
        # As the SDK does for its own background tasks: the task crosses into waitUntil as a proxy (a
        # thenable), destroyed once it settles rather than left to leak.
        task = asyncio.ensure_future(awaitable)
        proxy = create_proxy(task)
        task.add_done_callback(lambda _: proxy.destroy())
        ctx.waitUntil(proxy)

    return MissPath(OriginFetch(config.origin_url, config.origin_secret), gate, kv, defer)


class WorkersClock:
    def now(self):
        return time.time()

    def monotonic_ms(self):
        return time.perf_counter() * 1000.0


def mint_visitor_id():
    return "v" + secrets.token_urlsafe(12)


def config_from_env(env):
    """The env's vars and secrets as a ``Config``; a bad value is logged and the defaults are used."""
    values = {}
    for name in VARS:
        value = getattr(env, name, None)
        if isinstance(value, str):
            values[name] = value
    try:
        return parse_config(values)
    except ValueError as exc:
        log.error("bad worker configuration, serving anonymous defaults: %s", exc)
        return Config()
