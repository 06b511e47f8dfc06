"""Cloudflare adapters: the KV binding as the core's KV port, the clock, ids, and the env as config.

With ``worker/entry.py`` this is the only code that touches the Workers runtime.
"""

import logging
import secrets
import time

from personalizer import Config, parse_config

log = logging.getLogger("personalizer.worker")

CONFIG_VARS = ("PZ_SIGNING_KEYS", "CONSENT_DEFAULT", "UID_MAX_AGE_S", "VID_MAX_AGE_S", "BROWSER_MAX_AGE_S",
               "CACHE_MAX_BYTES", "MANIFEST_TTL_S", "ORIGIN_URL", "ORIGIN_TIMEOUT_MS", "ORIGIN_SECRET")


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
    for name in CONFIG_VARS:
        value = getattr(env, name, None)
        if isinstance(value, str):
            values[name] = value
    try:
        return parse_config(values)
    except ValueError as exc:
        log.error("bad worker configuration, serving anonymous defaults: %s", exc)
        return Config()
