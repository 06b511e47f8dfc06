"""The request path: facts -> KV reads (cached, in parallel) -> decisions -> rendered fragments.

Runtime-agnostic: it awaits only the ports it is given, so the same code answers under CPython (tests,
origin) and under Pyodide (the worker). It never raises for a KV or data problem: each slot degrades to the
next tier, down to the ``default`` tier compiled into the bundle.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from . import again, assets, codec, events, fallback, keys, preview, session
from .banners import BannerChoice, choose, force, trace
from .cache import SharedCache
from .config import Config
from .errors import BadRequest, DecodeError, Erased
from .identity import VID, Visitor, identify, in_holdout, sign
from .inject import Marker
from .ladder import Carousel, assemble, interleave
from .miss import MissPath, Resolved
from .ports import Clock, EventSink, IdMinter, KVReader, Reply
from .preview import Preview
from .records import (
    EMPTY_INVENTORY,
    PARSERS,
    BannerSet,
    Card,
    CardList,
    Context,
    DefaultTier,
    Inventory,
    ItemRecord,
    LocalTime,
    Manifest,
    Profile,
    Settings,
)
from .render import (
    banner_html,
    banner_json_text,
    carousel_html,
    carousel_json_text,
    dumps,
    dumps_text,
    escape,
    string_text,
)
from .request import MAX_QUERY_CHARS, READ_METHODS, Ask, gpc_opt_out, header, parse_ask, parse_cookies, utm_of

log = logging.getLogger("personalizer")
MAX_CART_LOOKUPS = 5
LIVE_NEIGHBOURS = 2  # "for you" leans towards the neighbours of this many items just viewed
MAX_BYTES = {"profile": codec.MAX_PROFILE_BYTES}  # decode bounds tighter than the codec's own, by kind
NOSNIFF = ("x-content-type-options", "nosniff")  # on every answer, errors and /healthz included
ERASED = object()  # what a read of a person's key gives when it holds an erasure's mark


class Read(NamedTuple):
    """One record a request needs: its key, its kind, how long the isolate may cache it (``None``: never, a
    person's profile), and whether its absence is a true miss for the origin to fill.

    A named tuple: a request makes several, and one is made twice as fast as a frozen dataclass."""

    key: str
    kind: str
    ttl_s: float | None
    fill: bool = False


@dataclass(frozen=True, slots=True)
class Records:
    """Everything one request may use, already decoded; ``None`` where a tier is unavailable."""

    manifest: Manifest | None = None
    profile: Profile | None = None
    segment: CardList | None = None
    popular: CardList | None = None
    banners: BannerSet | None = None
    inventory: Inventory = EMPTY_INVENTORY
    item: ItemRecord | None = None
    cart_items: tuple[ItemRecord, ...] = ()
    session_items: dict[str, ItemRecord] = field(default_factory=dict)  # item records of the session's ids
    erased: bool = False  # the person was erased: the request is served as an anonymous visitor's
    default: DefaultTier | None = None  # the shop's own default tier (None: none known, the compiled one)


def _live_cart(live: session.Session | None) -> bool:
    """The session knows the cart: it saw an add, or a purchase (which empties it). Else the profile's stands."""
    return live is not None and bool(live.cart or live.bought)


def _session_ids(slots: tuple[str, ...], live: session.Session | None) -> tuple[str, ...]:
    """The item records the session's ids need for these slots (cards for recent, neighbours, cart)."""
    if live is None:
        return ()
    ids: list[str] = []
    if "recent" in slots:
        ids += live.viewed
    if "home" in slots:
        ids += live.viewed[:LIVE_NEIGHBOURS]
    if "cart" in slots or "hero" in slots:
        ids += live.cart_ids[:MAX_CART_LOOKUPS]
    return tuple(dict.fromkeys(ids))


class Personalizer:
    def __init__(self, config: Config, kv: KVReader, clock: Clock, mint: IdMinter,
                 cache: SharedCache | None = None, miss: MissPath | None = None,
                 sink: EventSink | None = None, local: LocalTime | None = None) -> None:
        self.config, self.kv, self.clock, self.mint, self.miss, self.sink = config, kv, clock, mint, miss, sink
        self.local = local if local is not None else zoneinfo_local  # the worker passes JS Intl's
        self.cache = cache if cache is not None else SharedCache(config.cache_max_bytes)
        self._kv_ms = self._origin_ms = 0.0
        self._origin_deadline = 0.0
        self._outcomes: list[str] = []

    # -- reads -----------------------------------------------------------------------------------------
    def _cached(self, read: Read, now: float) -> tuple[bool, Any]:
        """``(True, value)`` when ``read`` is answered without KV: a fresh cache entry (``ttl_s`` given), or a
        key whose value failed a moment ago (``None``: not read, not decoded, not sent to the origin)."""
        if read.ttl_s is not None:
            hit, value = self.cache.get(read.key, now)
            if hit:
                return True, value
        if self.cache.is_bad(read.key, now):
            return True, None
        return False, None

    async def _fetch(self, read: Read, now: float) -> Any:
        """One record from KV (through the origin on a true miss when ``read.fill``); ``None`` on miss or failure.

        ``fill``: the key is one whose absence is a true miss, so the origin is asked (when configured).
        """
        key, kind, ttl_s = read.key, read.kind, read.ttl_s
        raw: bytes | None
        try:
            raw = await self.kv.get(key)
        except Exception as exc:  # the KV binding's failures are runtime-specific; all mean "next tier"
            log.warning("kv read failed key=%s error=%s", key, type(exc).__name__)
            return None  # not cached: the next request tries again
        value = None
        if raw is not None:
            try:
                value = PARSERS[kind](codec.decode(raw, expect=kind, key=key, now=int(now),
                                                   max_bytes=MAX_BYTES.get(kind, codec.MAX_DECODE_BYTES)))
            except DecodeError as exc:
                log.warning("bad record key=%s error=%s", key, exc)
                self.cache.mark_bad(key, now)
                return None
            except Erased:
                return ERASED
        elif read.fill and self.miss is not None:
            resolved = await self._fill(key, now)
            if resolved.outcome not in ("hit", "shared", "absent", "negative"):
                return None  # the origin failed: do not cache the gap, the next request may do better
            value, raw = resolved.value, resolved.raw
        if ttl_s is not None:
            self.cache.put(key, value, len(raw or b""), ttl_s, now)
        return value

    async def _fill(self, key: str, now: float) -> Resolved:
        """Ask the origin within what is left of this request's origin budget; write a hit back to KV."""
        assert self.miss is not None
        t0 = self.clock.monotonic_ms()
        remaining_s = (self._origin_deadline - t0) / 1000.0
        if remaining_s <= 0:
            self._outcomes.append("budget")
            return Resolved(None, None, "budget")
        r = await self.miss.gate.resolve(key, self.miss.client, timeout_s=remaining_s, now=now)
        self._origin_ms += self.clock.monotonic_ms() - t0
        self._outcomes.append(r.outcome)
        if r.raw is not None:
            self.miss.defer(self._write_back(key, r.raw))
        return r

    async def _write_back(self, key: str, raw: bytes) -> None:
        assert self.miss is not None
        try:
            await self.miss.writer.put(key, raw, expiration_ttl=self.config.origin_writeback_ttl_s)
        except Exception as exc:  # a failed write-back only means the next request asks the origin again
            log.warning("write-back failed key=%s error=%s", key, type(exc).__name__)

    async def _timed(self, *reads: Read | None) -> list[Any]:
        """The records of ``reads`` (``None`` for a ``None`` read), KV reads in parallel.

        What the isolate cache answers is answered here, synchronously: only true reads become tasks, and one
        read alone is awaited without one (under Pyodide each task is scheduled through JavaScript).
        """
        t0 = self.clock.monotonic_ms()
        now = self.clock.now()
        out: list[Any] = [None] * len(reads)
        pending: list[tuple[int, Read]] = []
        for i, read in enumerate(reads):
            if read is not None:
                hit, out[i] = self._cached(read, now)
                if not hit:
                    pending.append((i, read))
        if len(pending) == 1:
            i, read = pending[0]
            out[i] = await self._fetch(read, now)
        elif pending:
            fetched = await asyncio.gather(*(self._fetch(read, now) for _, read in pending))
            for (i, _), value in zip(pending, fetched, strict=True):
                out[i] = value
        if pending:
            self._kv_ms += self.clock.monotonic_ms() - t0
        return out

    async def load(self, ask: Ask, visitor: Visitor, live: session.Session | None = None) -> Records:
        """Read what ``ask`` needs: at most two parallel rounds, shared records via the cache.

        The session's item ids are read without asking the origin: they came from the page, so a missing
        one is not a true miss (and a forged beacon must not make the origin work).
        """
        ttl_s = self.config.manifest_ttl_s
        manifest, default = await self._timed(Read(keys.MANIFEST, "manifest", ttl_s),
                                              Read(keys.DEFAULT, "default", ttl_s))
        default = self._default(default)
        if manifest is None:
            return Records(default=default)
        gen, ttl = manifest.generation, manifest.settings.shared_ttl_s
        slots = set(ask.slots)
        want_item = ask.item is not None and "item" in slots
        profile_key, customer = _person_key(visitor)
        live_ids = _session_ids(ask.slots, live)
        first = await self._timed(
            Read(profile_key, "profile", None, fill=customer) if profile_key else None,
            Read(keys.INVENTORY, "inventory", self.config.manifest_ttl_s),
            Read(keys.popular(gen), "popular", ttl) if slots - {"hero"} else None,
            Read(keys.banners(gen), "banners", ttl) if "hero" in slots else None,
            Read(keys.item(gen, ask.item), "item", ttl, fill=True) if want_item and ask.item else None,
            *(Read(keys.item(gen, i), "item", ttl) for i in live_ids))
        profile, inventory, popular, banner_set, item = first[:5]
        session_items = {i: r for i, r in zip(live_ids, first[5:], strict=True) if r is not None}
        if profile is ERASED:  # nothing of theirs is used: not their profile, not what their session names
            return Records(manifest, None, None, popular, banner_set, inventory or EMPTY_INVENTORY, item, (), {},
                           erased=True, default=default)
        seg_id = next((s for s in profile.segments if s in manifest.segments), None) if profile else None
        cart_ids = [c.id for c in profile.cart[:MAX_CART_LOOKUPS]] \
            if profile and "cart" in slots and not _live_cart(live) else []
        second = await self._timed(
            Read(keys.segment(gen, seg_id), "segment", ttl, fill=True) if seg_id else None,
            *(Read(keys.item(gen, i), "item", ttl, fill=True) for i in cart_ids))
        return Records(manifest, profile, second[0], popular, banner_set, inventory or EMPTY_INVENTORY, item,
                       tuple(r for r in second[1:] if r is not None), session_items, default=default)

    def _default(self, read: DefaultTier | None) -> DefaultTier | None:
        """The shop's default tier as just read, kept by the isolate; when it could not be read (KV failing,
        the record gone), the last one this isolate read."""
        if read is not None:
            self.cache.keep(keys.DEFAULT, read)
            return read
        kept: DefaultTier | None = self.cache.kept(keys.DEFAULT)
        return kept

    # -- decisions ---------------------------------------------------------------------------------------
    def decide(self, ask: Ask, visitor: Visitor, rec: Records, live: session.Session | None = None,
               context: Context | None = None) -> dict[str, Carousel | BannerChoice]:
        """One decision per slot, in the order asked; no card repeats across the page's carousels.

        ``live``: the session state; what was just viewed leads ``recent`` and leans ``home``, and its cart
        (when it knows one) is the cart for exclusions, complements and the cart reminder.
        """
        settings = rec.manifest.settings if rec.manifest else Settings()
        profile = rec.profile if visitor.consented else None
        live = live if visitor.consented else None
        items = rec.session_items

        def cards_of(ids: tuple[str, ...]) -> tuple[Card, ...]:
            return tuple(c for c in (items[i].card if i in items else None for i in ids) if c is not None)

        cart_records = rec.cart_items
        if live is not None and _live_cart(live):
            base = profile or Profile(live.person, (), (), (), frozenset(), (), 0, "", ())
            profile = replace(base, cart=cards_of(live.cart_ids), cart_updated_at=live.cart_updated_at,
                              bought=base.bought | frozenset(live.bought))
            cart_records = tuple(items[i] for i in live.cart_ids[:MAX_CART_LOOKUPS] if i in items)
        shown: set[str] = set()
        personal_excl = (profile.bought | {c.id for c in profile.cart}) if profile else frozenset()
        viewed = cards_of(live.viewed) if live else ()
        neighbours = interleave(items[i].also_bought for i in live.viewed[:LIVE_NEIGHBOURS] if i in items) \
            if live else ()
        out: dict[str, Carousel | BannerChoice] = {}
        tail = [("segment", rec.segment.cards if rec.segment else ()),
                ("popular", rec.popular.cards if rec.popular else ()),
                ("default", rec.default.cards if rec.default else fallback.CARDS)]
        for slot in ask.slots:
            if slot == "hero":
                out[slot] = choose(rec.banners, profile, rec.segment.name if rec.segment else None,
                                   consented=visitor.consented, inventory=rec.inventory, settings=settings,
                                   now=int(self.clock.now()), bucket_key=visitor.person,
                                   context=context) or _default_banner(rec.default)
                continue
            sources: list[tuple[str, Any]] = tail
            exclude = set(personal_excl) | shown
            cap = settings.category_cap
            if slot == "again":  # re-buying is the point: only the cart and the page's other slots are left out
                exclude = ({c.id for c in profile.cart} if profile else set()) | shown
                cap = ask.limit  # a weekly shop is mostly one aisle: no cap
                mine_again = again.rank(profile.again, self.clock.now(), settings.again_due_floor) if profile else ()
                sources = [("user", mine_again),
                           ("segment", rec.segment.again if rec.segment else ()),
                           ("popular", rec.popular.again if rec.popular else ())]  # no default: only re-buys
            elif slot == "home" and (profile or neighbours):
                mine = profile.cards if profile else ()
                # One list needs no merge: assemble keeps the first of any repeated id, as interleave would.
                personal = interleave([neighbours, mine]) if neighbours else mine
                sources = [("user", personal), *tail]
            elif slot == "recent" and (profile or viewed):
                sources = [("user", (*viewed, *(profile.recent if profile else ()))), *tail]
            elif slot == "cart" and profile:
                sources = [("user", interleave(r.complements for r in cart_records)), *tail]
            elif slot == "item" and ask.item:
                exclude.add(ask.item)
                sources = [("item", rec.item.also_bought if rec.item else ()), *tail]
            carousel = assemble(slot, sources, limit=ask.limit, exclude=exclude, inventory=rec.inventory,
                                category_cap=cap)
            shown.update([c.id for c in carousel.cards])
            out[slot] = carousel
        return out

    # -- the whole request -------------------------------------------------------------------------------
    async def handle(self, method: str, path: str, query: str, headers: dict[str, str],
                     body: bytes | None = b"") -> Reply:
        """Answer one request. Never raises for bad input or bad data: 4xx or a degraded 200.

        ``body``: the request body (POST only), ``None`` when it was longer than a beacon may be and was
        not read.
        """
        reply = await self._answer(method, self.route(path), query, headers, body)
        if not self.config.allowed_origins:
            return reply
        return _with_cors(reply, header(headers, "origin"), self.config.allowed_origins)

    def route(self, path: str) -> str:
        """The path without ``BASE_PATH`` (the worker routed under the shop's host, ``shop.example/pz/*``)."""
        base = self.config.base_path
        if base and (path == base or path.startswith(base + "/")):
            return path[len(base):] or "/"
        return path

    async def _answer(self, method: str, path: str, query: str, headers: dict[str, str],
                      body: bytes | None) -> Reply:
        t0 = self.clock.monotonic_ms()
        self._kv_ms = self._origin_ms = 0.0
        self._outcomes = []
        self._origin_deadline = t0 + self.config.origin_timeout_ms
        try:
            ask = parse_ask(method.upper(), path, query)
        except BadRequest as exc:
            return _error(exc, method.upper() == "HEAD")
        except Exception:  # a parser bug must still be the client's 400, never a 5xx with a traceback
            log.exception("request line not understood path=%.200r", path)
            return _error(BadRequest("bad_request", "malformed request"), method.upper() == "HEAD")
        if ask.endpoint == "healthz":
            return Reply(200, (("content-type", "application/json"), ("cache-control", "no-store"), NOSNIFF),
                         b"" if ask.head else b'{"status":"ok"}')
        if ask.endpoint == "preflight":
            return _preflight(ask.slots[0], header(headers, "origin"), self.config.allowed_origins)
        if ask.endpoint == "asset":
            return _asset(ask, header(headers, "if-none-match"))
        now = int(self.clock.now())
        if ask.endpoint == "events":
            return await self.beacon(headers, body, now)
        visitor, cookies = self._identify(headers, now)
        shown = self._preview(ask.preview, now)
        if shown is not None:  # a preview: as the shopper it names (or nobody), no session, no holdout, no cookie
            visitor = Visitor(consented=True, user_id=shown.person)
        live = self._session(visitor, cookies, now) if shown is None else None
        held = shown is None and in_holdout(visitor.person, self.config.holdout_percent)
        seen, live = (ANONYMOUS, None) if held else (visitor, live)  # the holdout: served as nobody, still counted
        about: dict[str, Any] | None = None
        try:
            rec = await self.load(ask, seen, live)
            t1 = self.clock.monotonic_ms()
            if rec.erased:
                visitor, seen, live = ANONYMOUS, ANONYMOUS, None
            context = request_context(headers, ask.utm, now, self.config.timezone, self.local) \
                if "hero" in ask.slots else None  # only the banner is targeted
            decisions = self.decide(ask, seen, rec, live, context)
            if shown is not None and context is not None:
                decisions["hero"], about = self._forced(shown, rec, seen, context)
            gen = rec.manifest.generation if rec.manifest else fallback.GENERATION
            body, ctype = _render(ask, decisions, gen, held, about)
        except Exception:  # the one broad catch of the core: a bug or bad data must not become a 5xx
            log.exception("request failed, serving the default tier path=%s", path)
            t1 = self.clock.monotonic_ms()
            decisions = self.decide(ask, seen, Records(default=self.cache.kept(keys.DEFAULT)))
            gen = fallback.GENERATION
            body, ctype = _render(ask, decisions, gen, held)
        t2 = self.clock.monotonic_ms()
        hdrs = [("content-type", ctype),
                ("x-pz-tier", ",".join(f"{s}={_tier(d)}" for s, d in decisions.items())
                 if ask.endpoint == "page" else _tier(next(iter(decisions.values())))),
                ("server-timing", f"kv;dur={self._kv_ms - self._origin_ms:.2f}, origin;dur={self._origin_ms:.2f}"
                                  + (f';desc="{",".join(self._outcomes)}"' if self._outcomes else "")
                                  + f", render;dur={t2 - t1:.2f}, total;dur={t2 - t0:.2f}"),
                ("vary", "Cookie, Sec-GPC"),
                NOSNIFF]
        if held:
            hdrs.append(("x-pz-holdout", "1"))
        if shown is not None:  # never stored, never a cookie: the link's holder is not the shopper it shows
            hdrs += [("x-pz-preview", shown.campaign), ("cache-control", "no-store")]
        elif visitor.minted and visitor.visitor_id:
            hdrs.append(self._visitor_cookie(visitor.visitor_id, now))
            hdrs.append(("cache-control", "private, no-store"))
        elif visitor is ANONYMOUS:  # an erased person: what their browser carries of us goes too
            hdrs += [*_forget_cookies(cookies), ("cache-control", "private, no-store")]
        else:
            hdrs.append(("cache-control", f"private, max-age={self.config.browser_max_age_s}"))
        return Reply(200, tuple(hdrs), b"" if ask.head else body)

    # -- preview links ------------------------------------------------------------------------------------
    def _preview(self, token: str | None, now: int) -> Preview | None:
        """The preview a request's token names; a forged, expired or malformed one is no preview at all."""
        if token is None:
            return None
        shown = preview.verify(token, self.config.signing_keys, now)
        if shown is None:
            log.info("preview token ignored: forged, expired or malformed")
        return shown

    def _forced(self, shown: Preview, rec: Records, visitor: Visitor,
                context: Context) -> tuple[BannerChoice, dict[str, Any]]:
        """The hero a preview link forces, and what the preview's bar shows: the campaign, the variant, and the
        trace of every campaign tried for the request's facts (the link's own overriding the request's)."""
        ctx = context._replace(
            now=shown.at or context.now, country=shown.country or context.country,
            region=shown.region or context.region, utm=shown.utm or context.utm,
            timezone=shown.timezone or context.timezone,
            mobile=(shown.device == "mobile") if shown.device else context.mobile)
        banner_set = rec.banners or BannerSet(())
        settings = rec.manifest.settings if rec.manifest else Settings()
        winner, tried = trace(banner_set, rec.profile, rec.segment.name if rec.segment else None, consented=True,
                              inventory=rec.inventory, settings=settings, bucket_key=visitor.person, context=ctx)
        rule = next((r for r in banner_set.rules if r.id == shown.campaign), None)
        about: dict[str, Any] = {"campaign": shown.campaign, "expires": shown.expires,
                                 "trace": [t._asdict() for t in tried]}
        if rule is None:
            about["note"] = f"campaign {shown.campaign} is not in the live campaigns: what wins instead is shown"
            hero = winner or _default_banner(rec.default)
        elif winner is not None and winner.rule.id == rule.id and shown.variant in (None, winner.variant.id):
            hero = winner
        else:
            popular = rec.popular.cards if rec.popular else ()
            hero = force(rule, shown.variant, rec.profile, visitor.person, popular[0].title if popular else "")
            if shown.variant and hero.variant.id != shown.variant:
                about["note"] = f"campaign {rule.id} has no variant {shown.variant}: variant {hero.variant.id} shown"
        about["variant"] = hero.variant.id if hero.tier != "none" else None
        return hero, about

    # -- edge-side injection --------------------------------------------------------------------------------
    def injection(self, headers: dict[str, str], query: str = "") -> Injection:
        """Who the page is for, decided once before its first byte is sent (a minted visitor id's cookie
        must go out with the page's headers); ``Injection.fill`` then computes its placeholders' fragments.
        ``query``: the page's own query string (its landing parameters target campaigns)."""
        now = int(self.clock.now())
        visitor, cookies = self._identify(headers, now)
        live = self._session(visitor, cookies, now)
        set_cookies = (self._visitor_cookie(visitor.visitor_id, now),) if visitor.minted and visitor.visitor_id else ()
        try:
            params = dict(parse_qsl(query[:MAX_QUERY_CHARS], max_num_fields=64))
        except ValueError:  # a page's query that cannot be read targets nothing
            params = {}
        context = request_context(headers, utm_of(params), now, self.config.timezone, self.local)
        shown = self._preview(params.get(preview.PARAM), now)
        if shown is not None:  # as the shopper the link names (or nobody): no session, no holdout, no cookie
            return Injection(self, Visitor(consented=True, user_id=shown.person), None, (), context=context,
                             preview=shown)
        if in_holdout(visitor.person, self.config.holdout_percent):
            return Injection(self, ANONYMOUS, None, set_cookies, holdout=True, context=context)
        return Injection(self, visitor, live, set_cookies, context=context)

    async def fragments(self, markers: Sequence[Marker], visitor: Visitor, live: session.Session | None,
                        holdout: bool = False, context: Context | None = None,
                        shown: Preview | None = None) -> list[bytes | None]:
        """The HTML fragment of each placeholder (one page decision: no card twice); ``None`` leaves it as
        the origin sent it: an unknown slot, or a failure of any kind. ``shown``: a preview link's campaign."""
        usable = [m for m in markers if m.slot is not None]
        item = next((m.item for m in usable if m.slot == "item"), None)
        slots = tuple(dict.fromkeys(m.slot for m in usable if m.slot is not None))
        if not slots:
            return [None] * len(markers)
        self._origin_deadline = self.clock.monotonic_ms() + self.config.origin_timeout_ms
        ask = Ask("page", slots=slots, item=item, format="html")
        try:
            rec = await self.load(ask, visitor, live)
            if rec.erased:
                visitor, live = ANONYMOUS, None
            decisions = self.decide(ask, visitor, rec, live, context)
            about = None
            if shown is not None and context is not None and "hero" in decisions:
                decisions["hero"], about = self._forced(shown, rec, visitor, context)
            gen = rec.manifest.generation if rec.manifest else fallback.GENERATION
            html = {s: _fragment_html(s, d, gen) for s, d in decisions.items()}
        except Exception:  # the page goes out as the shop made it
            log.exception("injection failed, placeholders left as sent slots=%s", ",".join(slots))
            return [None] * len(markers)
        held = ' data-pz-holdout=""' if holdout else ""  # pz.js reports the page's impressions as the holdout's
        if shown is not None:  # pz.js shows the preview's bar and reports nothing of the page
            held += f' data-pz-preview="{escape(dumps_text(about or {"campaign": shown.campaign}))}"'
        return [None if m.slot is None or (m.slot == "item" and m.item != item) or not html[m.slot] else
                f'<div data-pz-slot="{m.slot}" data-pz-filled=""{held}>{html[m.slot]}</div>'.encode()
                for m in markers]

    # -- beacons ---------------------------------------------------------------------------------------
    async def beacon(self, headers: dict[str, str], body: bytes | None, now: int) -> Reply:
        """``POST /v1/events``: check every event, queue the good ones, answer 202 at once.

        The origin is never waited on: the queue carries the events to it. Consent denied keeps nothing.
        """
        try:
            raw = events.parse_beacon(header(headers, "content-type"), body)
        except BadRequest as exc:
            return _error(exc, False)
        kept, rejected = events.accept(raw, now)
        visitor, cookies = self._identify(headers, now)
        hdrs = [("content-type", "application/json; charset=utf-8"), ("cache-control", "no-store"), NOSNIFF]
        stored = 0
        flags: list[str] = []
        if kept and visitor.consented and await self._erased(visitor):
            hdrs += _forget_cookies(cookies)
            return Reply(202, tuple(hdrs), dumps({"accepted": len(kept), "stored": 0, "rejected": rejected}))
        if kept and visitor.consented:
            purpose = header(headers, "sec-purpose") or header(headers, "purpose")
            flags = events.agent_flags(header(headers, "user-agent"), purpose)
            message = events.message(visitor.user_id, visitor.visitor_id, flags, kept, now)
            try:
                if self.sink is None:
                    raise RuntimeError("no event queue bound")
                await self.sink.send(message)
            except Exception as exc:  # nothing was queued: say so, so the page may send the beacon again
                log.warning("event queue send failed events=%d error=%s", len(kept), type(exc).__name__)
                return Reply(503, (*hdrs, ("retry-after", "5")), dumps(
                    {"error": {"code": "unavailable", "message": "events not accepted, send them again later"}}))
            stored = len(kept)
        if visitor.minted and visitor.visitor_id and stored:
            hdrs.append(self._visitor_cookie(visitor.visitor_id, now))
        if stored and visitor.person and not flags:  # a robot's or a prefetch's events are not the shopper's
            state = session.fold(self._session(visitor, cookies, now), visitor.person, kept, now)
            hdrs.append(_cookie(session.SESSION, session.encode(state, now, self.config.signing_keys[0]),
                                self.config.session_max_age_s))
        elif not visitor.consented and cookies and session.SESSION in cookies:  # consent denied: no such state
            hdrs.append(_cookie(session.SESSION, "", 0))
        return Reply(202, tuple(hdrs), dumps({"accepted": len(kept), "stored": stored, "rejected": rejected}))

    async def _erased(self, visitor: Visitor) -> bool:
        """Whether the visitor's person key holds an erasure's mark (one KV read; a new visitor has none). A read
        that fails counts as not erased: the origin refuses an erased person's events at ingest all the same."""
        key, _ = _person_key(visitor)
        if key is None:
            return False
        try:
            raw = await self.kv.get(key)
        except Exception as exc:
            log.warning("kv read failed key=%s error=%s", key, type(exc).__name__)
            return False
        return raw is not None and codec.is_erased_mark(raw)

    def _identify(self, headers: dict[str, str], now: int) -> tuple[Visitor, dict[str, str] | None]:
        """The visitor and their ``pz_*`` cookies (``None`` when the header could not be read)."""
        cookies = None
        try:
            cookies = parse_cookies(header(headers, "cookie"))
            return identify(cookies, gpc_opt_out(header(headers, "sec-gpc")), self.config, now, self.mint), cookies
        except Exception:  # whatever went wrong, we cannot tell what the visitor allowed: fail closed
            log.exception("identity not understood")
            return Visitor(consented=False), cookies

    def _session(self, visitor: Visitor, cookies: dict[str, str] | None, now: int) -> session.Session | None:
        """The visitor's valid session state, or ``None`` (no consent, none, forged, stale, another person's)."""
        if not visitor.consented or not cookies or visitor.minted:
            return None
        try:
            return session.decode(cookies.get(session.SESSION), visitor.person, self.config.signing_keys, now,
                                  self.config.session_max_age_s)
        except Exception:  # a state we cannot read is no state, never an error
            log.exception("session state not understood")
            return None

    def _visitor_cookie(self, visitor_id: str, now: int) -> tuple[str, str]:
        return _cookie(VID, sign(VID, visitor_id, now, self.config.signing_keys[0]), self.config.vid_max_age_s)


@dataclass(frozen=True, slots=True)
class Injection:
    """One page's visitor, session and the cookies its headers carry; ``fill`` is ``inject.splice``'s."""

    core: Personalizer
    visitor: Visitor
    live: session.Session | None
    set_cookies: tuple[tuple[str, str], ...]
    holdout: bool = False  # the person is in the global holdout: the fragments say so (data-pz-holdout)
    context: Context | None = None  # the request's own facts, for campaign targeting
    preview: Preview | None = None  # the page's preview link (its pz_preview): never stored, nothing counted

    async def fill(self, markers: Sequence[Marker]) -> list[bytes | None]:
        return await self.core.fragments(markers, self.visitor, self.live, self.holdout, self.context, self.preview)


def _person_key(visitor: Visitor) -> tuple[str | None, bool]:
    """The KV key of the visitor's own record (``None``: a new visitor, or no consent), and whether they are a
    signed customer (whose absence is a true miss). Customers and visitors live in separate key spaces: a
    visitor id can never name a customer."""
    person = None if visitor.minted else visitor.person
    if person is None:
        return None, False
    customer = person == visitor.user_id
    return (keys.profile(person) if customer else keys.visitor(person)), customer


_COUNTRY = re.compile(r"[A-Z]{2}")
_REGION = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}")


def request_context(headers: dict[str, str], utm: tuple[tuple[str, str], ...], now: int, zone: str,
                    local: LocalTime) -> Context:
    """The request's own facts for targeting. ``cf-ipcountry`` and ``cf-region`` are the worker's, taken from
    Cloudflare's ``request.cf`` (never a client's header); the device from ``Sec-CH-UA-Mobile``, else the user
    agent (``Mobi``, as the browsers' own convention has it); nothing readable: unknown, and no match."""
    country = (header(headers, "cf-ipcountry") or "").upper()
    region = (header(headers, "cf-region") or "").upper()
    hint = header(headers, "sec-ch-ua-mobile")
    agent = header(headers, "user-agent")
    mobile = (True if hint.strip() == "?1" else False if hint.strip() == "?0" else None) if hint else \
        (("Mobi" in agent) if agent else None)
    return Context(now, country if _COUNTRY.fullmatch(country) else "",
                   region if _REGION.fullmatch(region) else "", mobile, utm,
                   header(headers, "cf-timezone") or zone, local)


def zoneinfo_local(zone: str, now: int) -> tuple[int, int]:
    """(weekday, minute of the day) at ``now`` in ``zone``, by the standard library's zoneinfo (CPython, tests;
    in Pyodide its data is a package the worker does without: the worker passes JS Intl's clock instead)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    local = datetime.fromtimestamp(now, ZoneInfo(zone))
    return local.weekday(), local.hour * 60 + local.minute


# An erased person, or one in the global holdout, is served as a visitor who allowed nothing.
ANONYMOUS = Visitor(consented=False)


def _forget_cookies(cookies: dict[str, str] | None) -> list[tuple[str, str]]:
    """Deletions of the session state and visitor id an erased person's browser still carries."""
    return [_cookie(name, "", 0) for name in (session.SESSION, VID) if cookies and name in cookies]


def _cookie(name: str, value: str, max_age_s: int) -> tuple[str, str]:
    """A ``Set-Cookie`` header of ours: site-wide, script-proof, HTTPS only; ``max_age_s`` 0 deletes it."""
    return ("set-cookie", f"{name}={value}; Path=/; Max-Age={max_age_s}; Secure; HttpOnly; SameSite=Lax")


def _default_banner(default: DefaultTier | None) -> BannerChoice:
    """The hero when no campaign wins: the shop's default banner (its control variant), else none at all."""
    if default is None or default.banner is None:
        return fallback.NO_BANNER
    return BannerChoice("default", default.banner, default.banner.variants[0])


def _tier(d: Carousel | BannerChoice) -> str:
    return d.tier


def _fragment_html(slot: str, d: Carousel | BannerChoice, gen: str) -> str:
    return banner_html(d, gen, slot) if isinstance(d, BannerChoice) else carousel_html(d, gen)


def _render(ask: Ask, decisions: dict[str, Carousel | BannerChoice], gen: str,
            holdout: bool = False, about: dict[str, Any] | None = None) -> tuple[bytes, str]:
    """The answer's body. ``holdout``: the visitor is in the global holdout, which the body says (a page's
    ``data-pz-holdout``, a JSON ``"holdout": true``) so the impressions pz.js reports say it too. ``about``: a
    preview's campaign and trace (``data-pz-preview``, JSON ``"preview"``), which pz.js shows and counts nothing
    of."""
    if ask.format == "html":
        html = "".join(_fragment_html(s, d, gen) for s, d in decisions.items())
        if ask.endpoint == "page":
            held = ' data-pz-holdout=""' if holdout else ""
            if about is not None:
                held += f' data-pz-preview="{escape(dumps_text(about))}"'
            html = f'<div class="pz-page" data-generation="{escape(gen)}"{held}>{html}</div>'
        elif about is not None:
            html = f'<div data-pz-preview="{escape(dumps_text(about))}">{html}</div>'
        return html.encode(), "text/html; charset=utf-8"
    # The JSON is joined from the fragments' texts (cards memoised per isolate); the same bytes as dumps() of
    # {"generation": gen, "fragments": {slot: fragment}} or of the one fragment.
    frags = {s: banner_json_text(d, gen, s) if isinstance(d, BannerChoice) else carousel_json_text(d, gen)
             for s, d in decisions.items()}
    held = '"holdout":true,' if holdout else ""
    if about is not None:
        held += f'"preview":{dumps_text(about)},'
    if ask.endpoint != "page":
        one = next(iter(frags.values()))
        return ("{" + held + one[1:] if held else one).encode(), "application/json; charset=utf-8"
    members = ",".join([f"{string_text(s)}:{text}" for s, text in frags.items()])
    return (f'{{"generation":{string_text(gen)},{held}"fragments":{{{members}}}}}'.encode(),
            "application/json; charset=utf-8")


ASSETS = {"pz.js": (assets.SCRIPT, assets.SCRIPT_VERSION, "text/javascript; charset=utf-8"),
          "pz.css": (assets.STYLE, assets.STYLE_VERSION, "text/css; charset=utf-8")}
ASSET_MAX_AGE_S = 300  # an unversioned link (/v1/pz.js) picks up a new snippet within five minutes
CORS_MAX_AGE_S = 600


def _asset(ask: Ask, if_none_match: str | None) -> Reply:
    """The snippet or its stylesheet: immutable for a year when linked with its current ``?v=``."""
    data, version, ctype = ASSETS[ask.slots[0]]
    etag = f'"{version}"'
    cache = "public, max-age=31536000, immutable" if ask.version == version else \
        f"public, max-age={ASSET_MAX_AGE_S}, stale-while-revalidate=86400"
    hdrs = (("content-type", ctype), ("cache-control", cache), ("etag", etag), ("x-pz-version", version), NOSNIFF)
    if if_none_match and etag in (t.strip().removeprefix("W/") for t in if_none_match.split(",")):
        return Reply(304, hdrs, b"")
    return Reply(200, hdrs, b"" if ask.head else data)


def _preflight(path: str, origin: str | None, allowed: frozenset[str]) -> Reply:
    """``OPTIONS``: 204 with what may be sent; the CORS grant only for an allowed origin (added after)."""
    methods = "POST, OPTIONS" if path == "/v1/events" else f"{READ_METHODS}, OPTIONS"
    hdrs = [("allow", methods), ("cache-control", "no-store"), NOSNIFF]
    if origin and origin.lower() in allowed:
        hdrs += [("access-control-allow-methods", methods), ("access-control-allow-headers", "content-type"),
                 ("access-control-max-age", str(CORS_MAX_AGE_S))]
    return Reply(204, tuple(hdrs), b"")


def _with_cors(reply: Reply, origin: str | None, allowed: frozenset[str]) -> Reply:
    """Every answer varies by ``Origin`` once origins are configured; an allowed one gets the grant."""
    hdrs = [h for h in reply.headers if h[0] != "vary"]
    vary = next((v for k, v in reply.headers if k == "vary"), "")
    hdrs.append(("vary", f"{vary}, Origin" if vary else "Origin"))
    if origin and origin.lower() in allowed:
        hdrs += [("access-control-allow-origin", origin), ("access-control-allow-credentials", "true"),
                 ("access-control-expose-headers", "x-pz-tier")]
    return Reply(reply.status, tuple(hdrs), reply.body)


def _error(exc: BadRequest, head: bool) -> Reply:
    hdrs = [("content-type", "application/json; charset=utf-8"), ("cache-control", "no-store"), NOSNIFF]
    if exc.allow:
        hdrs.append(("allow", exc.allow))
    body = dumps({"error": {"code": exc.code, "message": exc.message}})
    return Reply(exc.status, tuple(hdrs), b"" if head else body)
