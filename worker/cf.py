"""Cloudflare adapters: the KV binding as the core's KV port, the clock, ids, and the env as config.

With ``worker/entry.py`` this is the only code that touches the Workers runtime.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import time

from js import JSON, AbortController, Date, Headers, Intl, Object, TransformStream
from js import Error as JsError
from js import fetch as js_fetch
from pyodide.ffi import create_proxy, jsnull, to_js
from workers import Response, fetch, python_to_rpc

from personalizer import Config, MissPath, jsontext, parse_config
from personalizer.config import VARS
from personalizer.digits import ascii_digits
from personalizer.events import retry_delay_s
from personalizer.inject import forward_headers, page_headers, splice

log = logging.getLogger("personalizer.worker")

class KVBinding:
    """``env.PERSONALIZATION`` (a KvNamespace behind the SDK's wrapper) as a ``KVReader``/``KVWriter``.

    The KvNamespace is called itself, as the SDK's own RPC conversion hands it to JavaScript: KV's get and put
    take and give only strings, buffers and a plain options object, which the worker converts here, and the
    wrapper's generic conversions of every argument and result cost about 0.08 ms a read in Pyodide, twice what
    the read itself costs.
    """

    def __init__(self, binding):
        self._kv = python_to_rpc(binding)

    async def get(self, key):
        value = await self._kv.get(key, "arrayBuffer")
        if value is None or value is jsnull:
            return None
        # Copy out of the JS buffer at once.
        return value.to_bytes()

    async def put(self, key, value, expiration_ttl=None):
        options = Object.new()
        if expiration_ttl:
            options.expirationTtl = expiration_ttl
        await self._kv.put(key, to_js(bytes(value)), options)


class EventQueue:
    """``env.EVENTS`` (a Queue producer binding) as the core's ``EventSink``: one message per beacon.

    The binding is looked up when a beacon is sent, not per request: the SDK's env wrapper inspects a binding's
    type on every lookup, and only beacons use this one. The message crosses to JavaScript as one JSON text that
    ``JSON.parse`` reads, and the Queue itself is called (as for KV): the SDK's deep conversion of a map of lists
    of maps cost 0.25-0.31 ms a beacon in Pyodide, this 0.07 ms.
    """

    def __init__(self, env):
        self._env = env

    async def send(self, message):
        binding = getattr(self._env, "EVENTS", None)
        if binding is None:
            raise RuntimeError("no EVENTS queue bound")
        options = Object.new()
        options.contentType = "json"
        body = JSON.parse(json.dumps(message, separators=(",", ":"), allow_nan=False))
        await python_to_rpc(binding).send(body, options)


async def read_body(request, limit):
    """The request body, or ``None`` when it is longer than ``limit`` bytes (declared or as streamed)."""
    # Straight from the JS Headers (the SDK's request.headers first copies every header, ~0.1 ms).
    declared = request.js_object.headers.get("content-length")
    if type(declared) is str and (not ascii_digits(declared) or int(declared) > limit):
        return None
    stream = request.js_object.body
    if not stream:
        return b""
    reader = stream.getReader()
    chunks, size = [], 0
    async for data in byte_chunks(reader):
        size += len(data)
        if size > limit:
            await reader.cancel()
            return None
        chunks.append(data)
    return b"".join(chunks)


async def byte_chunks(reader):
    """A ``ReadableStream`` reader's chunks as ``bytes``, copied out of the JS buffer as they come."""
    while True:
        chunk = await reader.read()
        if chunk.done:
            return
        yield bytes(chunk.value.to_bytes())


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


INGEST_TIMEOUT_S = 30


async def deliver_events(config, batch):
    """The queue handler: post a batch of beacons to the origin's /v1/ingest; ack it, or retry it later.

    The origin is idempotent on event ids, so a batch posted twice (a retry after a lost answer) is stored
    once. On the dead-letter queue every retry waits the longest delay.
    """
    messages = list(batch.messages)
    if not messages:
        return
    dead = str(batch.queue).endswith("-dlq")
    attempts = max(int(m.attempts) for m in messages)
    try:
        if not (config.origin_url and config.origin_secret):
            raise RuntimeError("no ORIGIN_URL and ORIGIN_SECRET configured")
        body = json.dumps({"beacons": [m.body for m in messages]}, separators=(",", ":"))
        response = await asyncio.wait_for(fetch(
            config.origin_url + "/v1/ingest", method="POST", body=body,
            headers={"content-type": "application/json", "x-pz-origin-secret": config.origin_secret}),
            INGEST_TIMEOUT_S)
        if response.status != 200:
            raise OriginError(response.status)
        counts = jsontext.loads(await response.text())
    except Exception as exc:
        delay = config.events_retry_max_s if dead else retry_delay_s(
            attempts, config.events_retry_base_s, config.events_retry_max_s)
        log.warning("event ingest failed queue=%s messages=%d attempt=%d retry_in_s=%d error=%s",
                    batch.queue, len(messages), attempts, delay, exc)
        batch.retryAll({"delaySeconds": delay})
        return
    log.info("events ingested queue=%s messages=%d counts=%s", batch.queue, len(messages), counts)
    batch.ackAll()


def defer(ctx, awaitable):
    """Run ``awaitable`` in the background, kept alive by ``ctx.waitUntil``, as the SDK does for its own
    tasks: the task crosses as a proxy (a thenable), destroyed once it settles rather than left to leak."""
    task = asyncio.ensure_future(awaitable)
    proxy = create_proxy(task)
    task.add_done_callback(lambda _: proxy.destroy())
    ctx.waitUntil(proxy)


def _gateway_error(status, code, message):
    return Response(json.dumps({"error": {"code": code, "message": message}}), status=status,
                    headers={"content-type": "application/json; charset=utf-8", "cache-control": "no-store",
                             "x-content-type-options": "nosniff"})


async def inject_page(request, method, url, headers, core, config, ctx):
    """Edge-side injection (``PAGES_ORIGIN``): the shop's page with its placeholders filled, streamed.

    Headers go out as soon as the origin answers; the body is spliced chunk by chunk. Anything that is not
    a 200 HTML answer to a GET passes through untouched (request bodies stream through too); an origin that
    cannot be reached is a 502 and one that has not started answering within ``PAGES_TIMEOUT_MS`` a 504, both
    with no details; a personalization failure leaves the page as the origin sent it. When the browser goes
    away the upstream request is aborted, not left to finish. ``headers``: what the core reads of the request,
    as the entry read them (with ``where_from``'s facts).
    """
    target = config.pages_origin + url.path + (f"?{url.query}" if url.query else "")
    forward = Headers.new()
    for name, value in forward_headers(list(request.headers.items()), request.headers.get("cf-connecting-ip"),
                                       url.netloc, url.scheme):
        forward.append(name, value)
    upstream_call = AbortController.new()
    init = {"method": method, "headers": forward, "redirect": "manual", "signal": upstream_call.signal}
    if method not in ("GET", "HEAD"):
        init["body"] = request.js_object.body
        init["duplex"] = "half"
    try:
        upstream = await asyncio.wait_for(js_fetch(target, to_js(init, dict_converter=Object.fromEntries)),
                                          config.pages_timeout_ms / 1000)
    except TimeoutError:
        upstream_call.abort()
        log.warning("pages origin timed out after_ms=%d", config.pages_timeout_ms)
        return _gateway_error(504, "gateway_timeout", "the page did not arrive in time")
    except Exception as exc:
        log.warning("pages origin unreachable error=%s", type(exc).__name__)
        return _gateway_error(502, "bad_gateway", "the page is not available")
    ctype = (upstream.headers.get("content-type") or "").lower()
    if method != "GET" or upstream.status != 200 or not ctype.startswith("text/html") or not upstream.body:
        return Response(upstream)
    page = core.injection(headers, url.query)
    out = page_headers(list(upstream.headers.entries()), page.set_cookies,
                       page.preview.campaign if page.preview else None)
    stream = TransformStream.new()
    writer = stream.writable.getWriter()
    reader = upstream.body.getReader()

    async def write(data):
        await writer.write(to_js(data))

    async def pump():
        try:
            filled = await splice(byte_chunks(reader), write, page.fill)
            log.info("page injected path=%s placeholders=%d", url.path, filled)
            await writer.close()
        except Exception as exc:  # the origin's body broke off, or the browser went away
            log.warning("page injection stopped path=%s error=%s", url.path, type(exc).__name__)
            # The browser sees a cut body, not a complete-looking one; a stream already errored or closed
            # has nothing more to be told.
            with contextlib.suppress(Exception):
                await writer.abort(JsError.new(type(exc).__name__))

    async def release_when_gone():
        """The browser went away (the page's stream was cancelled): abort the upstream request, whose body the
        pump may be waiting on, so its connection is not held open."""
        # The outcome as a bool: a promise rejected with a value that is not an Error cannot be awaited in Pyodide
        # (its future refuses the exception, fatally).
        if await writer.closed.then(lambda _: False, lambda _: True):
            upstream_call.abort()

    defer(ctx, pump())
    defer(ctx, release_when_gone())
    return Response(stream.readable, status=200, headers=out)


def where_from(request, headers):
    """Cloudflare's own geolocation of the request (``request.cf``) as the core reads it: ``cf-ipcountry`` and
    ``cf-region`` (ISO 3166-2, ``DE-BY``). Only from ``request.cf``, never a header a client sent."""
    cf = getattr(request.js_object, "cf", None)
    if cf is None or cf is jsnull:
        return
    country = getattr(cf, "country", None)
    region = getattr(cf, "regionCode", None)
    zone = getattr(cf, "timezone", None)
    if type(country) is str:
        headers["cf-ipcountry"] = country
        if type(region) is str:
            headers["cf-region"] = f"{country}-{region}"
    if type(zone) is str:
        headers["cf-timezone"] = zone


_ZONE_FORMATS = {}  # a zone's Intl.DateTimeFormat, made once per isolate (a few dozen zones at most)
_WEEKDAYS = {"Mon": 0, "Tue": 1, "Wed": 2, "Thu": 3, "Fri": 4, "Sat": 5, "Sun": 6}


def intl_local_time(zone, now):
    """(weekday, minute of the day) at ``now`` in ``zone``, by JavaScript's Intl: the runtime's own time zone
    data, daylight-saving changes included, with nothing to bundle (Python's zoneinfo needs the tzdata package
    under Pyodide). ``ValueError`` for a zone Intl does not know."""
    fmt = _ZONE_FORMATS.get(zone)
    if fmt is None:
        if len(_ZONE_FORMATS) >= 256:
            _ZONE_FORMATS.clear()
        options = {"timeZone": zone, "weekday": "short", "hour": "2-digit", "minute": "2-digit", "hourCycle": "h23"}
        try:
            fmt = Intl.DateTimeFormat.new("en-US", to_js(options, dict_converter=Object.fromEntries))
        except Exception:
            raise ValueError(f"unknown time zone {zone!r}") from None
        _ZONE_FORMATS[zone] = fmt
    values = {part.type: part.value for part in fmt.formatToParts(Date.new(now * 1000))}
    return _WEEKDAYS[values["weekday"]], int(values["hour"]) % 24 * 60 + int(values["minute"])


def miss_path(config, kv, ctx, gate):
    """The miss path when an origin is configured, else ``None`` (misses go straight to the next tier)."""
    if not (config.origin_url and config.origin_secret):
        return None

    return MissPath(OriginFetch(config.origin_url, config.origin_secret), gate, kv, lambda aw: defer(ctx, aw))


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
        elif isinstance(value, int | float) and not isinstance(value, bool):  # a number in [vars]
            values[name] = str(int(value)) if float(value).is_integer() else str(value)
    try:
        return parse_config(values)
    except ValueError as exc:
        log.error("bad worker configuration, serving anonymous defaults: %s", exc)
        return Config()
