"""The `personalizer` command line for developers and the origin data team."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from personalizer.config import parse_config
from personalizer.identity import UID, VID, sign

from .engine.base import ENGINES
from .tuning import BUDGET_S as TUNE_BUDGET_S
from .tuning import PEOPLE as TUNE_PEOPLE


def read_dev_vars(path: Path) -> dict[str, str]:
    """``.dev.vars`` (dotenv syntax, as wrangler reads it): KEY=VALUE lines, # comments, optional quotes."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1]
        out[k.strip()] = v
    return out


def worker_vars(dev_vars: Path) -> dict[str, str]:
    """The worker's secrets as the CLI sees them: the environment wins over ``.dev.vars``."""
    env = read_dev_vars(dev_vars)
    env.update({k: v for k, v in os.environ.items() if k in ("PZ_SIGNING_KEYS", "CONSENT_DEFAULT", "ORIGIN_SECRET")})
    return env


def id_key(dev_vars: Path) -> str | None:
    """The key of the pseudonymous ids (``PZ_ID_KEY``: the environment, else ``.dev.vars``)."""
    return os.environ.get("PZ_ID_KEY") or read_dev_vars(dev_vars).get("PZ_ID_KEY") or None


def cmd_pseudonym(args: argparse.Namespace) -> int:
    from .imports.identity import ID_KEY_ENV, MIN_KEY, pseudonym

    key = id_key(Path(args.dev_vars))
    if key is None or len(key) < MIN_KEY:
        print(f"error: set {ID_KEY_ENV} (at least {MIN_KEY} characters) in the environment or in .dev.vars: the "
              "key the build used", file=sys.stderr)
        return 2
    for identifier in args.identifier:
        print(pseudonym(identifier, key))
    return 0


def signing_key(dev_vars: Path) -> bytes | None:
    """The first of the worker's PZ_SIGNING_KEYS (environment, else .dev.vars); ``None`` said on stderr."""
    keys = parse_config(worker_vars(dev_vars)).signing_keys
    if not keys:
        print("error: no signing key: set PZ_SIGNING_KEYS in the environment or in .dev.vars", file=sys.stderr)
        return None
    return keys[0]


def cmd_sign(args: argparse.Namespace) -> int:
    key = signing_key(Path(args.dev_vars))
    if key is None:
        return 2
    try:
        token = sign(UID if args.cmd == "sign-user" else VID, args.id, int(args.issued_at or time.time()), key)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from .batch.seed import write_seed  # numpy is imported only by the commands that build

    t0 = time.perf_counter()
    built = write_seed(Path(args.config), Path(args.out), _erased(args), args.database)
    size = sum(len(v) for v in built.records.values())
    print(f"seed: generation {built.generation}: {len(built.records)} records, {size / 1e6:.1f} MB "
          f"-> {args.out}/kv.json in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .engine.base import EngineMissing, open_engine

    t0 = time.perf_counter()
    try:
        engine = open_engine(args.engine, progress=_progress)
    except EngineMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _build(args, engine, t0)
    finally:
        engine.close()


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _build(args: argparse.Namespace, engine: Any, t0: float) -> int:
    from .batch.build import build
    from .batch.inputs import InputError, load_shop
    from .batch.seed import erased_in, load_config, previous_profiles, write_inputs, write_outputs
    from .campaigns import CampaignsError, load_campaigns
    from .imports.formats import parse_mapping

    out = Path(args.out)
    if args.tune_budget < 0 or args.tune_people < 1:
        print("error: --tune-budget is seconds (0 or more) and --tune-people a number of shoppers (1 or more)",
              file=sys.stderr)
        return 2
    try:
        campaigns = load_campaigns(Path(args.campaigns)) if args.campaigns else []
    except CampaignsError as exc:
        print(f"{exc}\nerror: the campaigns file has {len(exc.problems)} problem(s): nothing built", file=sys.stderr)
        return 2
    if not campaigns:
        print("note: no campaigns (--campaigns FILE): no banners; the hero keeps the page's own content",
              file=sys.stderr)
    try:
        # kv_profiles (the seed's demo split into pushed and store-only shoppers) never applies to real data.
        cfg = {k: v for k, v in load_config(Path(args.config)).items() if k != "kv_profiles"}
        erased = _erased(args) | erased_in(out, args.database)
        # an object-store URL (s3://bucket/events/) is an event lake there, read as given
        events: Path | str = args.events if "://" in args.events else Path(args.events)
        shoppers = Path(args.shoppers) if args.shoppers else None
        if args.events == "store":  # the store's history and the beacons since: what the origin has seen
            from .store import open_stores
            from .store.base import write_build_inputs

            stores = open_stores(out / "origin", args.database)
            events, from_store = write_build_inputs(stores.log, stores.profiles, out / "inputs-from-store")
            shoppers = shoppers or from_store
            print(f"build: events from the store ({stores.where}) -> {events}", file=sys.stderr)
        shop, report = load_shop(Path(args.catalog), events, shoppers, strict=args.on_bad_row == "fail", now=args.now,
                                 erased=erased, id_key=id_key(Path(".dev.vars")), mapping=parse_mapping(args.map),
                                 currency=args.currency, engine=engine)
    except (InputError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary(), file=sys.stderr)
    for warning in report.mostly_bad():
        print(f"warning: {warning}", file=sys.stderr)
    tuning = None if args.no_tune else _tune(shop, cfg, engine, args, out)
    if tuning is not None:
        cfg = {**cfg, **tuning.chosen}
    built = build(shop, cfg, None if args.full else previous_profiles(out), progress=_progress, campaigns=campaigns,
                  engine=engine)
    for warning in built.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if built.warnings and args.on_bad_row == "fail":
        print(f"error: {len(built.warnings)} warning(s) under --on-bad-row fail: nothing written", file=sys.stderr)
        return 2
    write_outputs(shop, built, out, erased, args.database)
    write_inputs(shop, out / "inputs", erased, events=False)  # the catalog as read: the demo shop on your data
    if tuning is not None:  # the next build on the same data and settings keeps this choice
        (out / "tuning.json").write_text(json.dumps(tuning.as_json(), indent=1) + "\n")
    (out / "report.json").write_text(json.dumps({
        "generation": built.generation, "products": len(shop.products), "shoppers": len(shop.shoppers),
        "events": len(shop.events), "records": len(built.records), "inputs": report.as_json(),
        "warnings": list(built.warnings),
        "tuning": tuning.as_json() if tuning is not None else {"note": "--no-tune: today's constants"}},
        indent=1) + "\n")
    size = sum(len(v) for v in built.records.values())
    print(f"build: generation {built.generation}: {len(shop.products)} products, {len(shop.shoppers)} shoppers, "
          f"{len(shop.events)} events -> {len(built.records)} records ({built.reused} unchanged profiles "
          f"reused), {size / 1e6:.1f} MB in {out} "
          f"({time.perf_counter() - t0:.1f}s); counts in {(out / 'report.json').resolve()}", file=sys.stderr)
    return 0


def _tune(shop: Any, cfg: dict[str, Any], engine: Any, args: argparse.Namespace, out: Path) -> Any:
    """The tuning's choice for this build: the last build's (OUT/tuning.json, written with its outputs) when the
    data and settings it was made from are the same (its fingerprint), else a new search."""
    from .tuning.search import Tuning, fingerprint, tune

    cache = out / "tuning.json"
    mark = fingerprint(shop, cfg, args.tune_people, args.tune_budget)
    try:
        last = Tuning.from_json(json.loads(cache.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        last = None
    if last is not None and last.fingerprint == mark:
        print(f"tune: the data and settings are those of the last tuning: its choice is kept ({cache})",
              file=sys.stderr)
        for line in last.summary():
            print(line, file=sys.stderr)
        return last
    return tune(shop, cfg, engine=engine, budget_s=args.tune_budget, people=args.tune_people, progress=_progress)


def cmd_campaigns(args: argparse.Namespace) -> int:
    from .campaigns import CampaignsError, load_campaigns

    try:
        rules = load_campaigns(Path(args.file))
    except CampaignsError as exc:
        print(str(exc), file=sys.stderr)
        print(f"{args.file}: {len(exc.problems)} problem(s); nothing is built or pushed from it until they are fixed",
              file=sys.stderr)
        return 2
    if args.action == "preview":
        return _preview(args, rules)
    variants = sum(len(r["variants"]) for r in rules)
    print(f"{args.file}: {len(rules)} campaigns, {variants} variants: ok")
    return 0


def _preview(args: argparse.Namespace, rules: list[dict[str, Any]]) -> int:
    from datetime import datetime

    from personalizer.records import Context

    from .campaigns.file import instant
    from .campaigns.preview import load_person, preview

    now = instant(args.at) if args.at else int(time.time())
    if now is None:
        print(f"error: --at {args.at!r} is not an RFC 3339 instant with its offset (2026-12-24T18:30:00+01:00)",
              file=sys.stderr)
        return 2
    profile, manifest, inventory = load_person(Path(args.build), args.person)
    if args.person and profile is None:
        print(f"note: {args.person} has no profile in {args.build}: previewed as a visitor without one",
              file=sys.stderr)
    country = (args.country or "").upper()
    region = f"{country}-{args.region.upper()}" if args.region and country else ""
    utm = _utm_flags(args)
    context = Context(now, country, region, None if args.device is None else args.device == "mobile", utm,
                      args.timezone)
    result = preview(rules, profile, manifest, inventory, context, consented=not args.no_consent,
                     bucket_key=None if args.no_consent else args.person)
    when = datetime.fromtimestamp(now).astimezone().isoformat(timespec="minutes")
    print(f"preview of {args.file} for {args.person or 'a new visitor'} at {when}, country {country or '-'}, "
          f"region {region or '-'}, zone {args.timezone}, device {args.device or '-'}, "
          f"{' '.join(f'{k}={v}' for k, v in utm) or 'no utm'}")
    print(result.text())
    return 0


def _utm_flags(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The landing parameters given with --utm-campaign, --utm-source, --utm-medium, lower case (as the edge
    reads a page's)."""
    return tuple((f"utm_{n}", v.lower()) for n in ("campaign", "source", "medium") if (v := getattr(args, f"utm_{n}")))


def cmd_preview_link(args: argparse.Namespace) -> int:
    """A signed link to the shop's page that shows one campaign (``personalizer.preview``)."""
    from datetime import datetime
    from urllib.parse import urlsplit

    from personalizer import preview

    from .campaigns import CampaignsError, load_campaigns
    from .campaigns.file import instant

    def fail(message: str) -> int:
        print(f"error: {message}; no link made", file=sys.stderr)
        return 2

    if not 1 <= args.minutes <= preview.MAX_LIFETIME_S // 60:
        return fail(f"--minutes {args.minutes}: a preview link lives 1 to {preview.MAX_LIFETIME_S // 60} minutes")
    at = instant(args.at) if args.at else None
    if args.at and at is None:
        return fail(f"--at {args.at!r} is not an RFC 3339 instant with its offset (2026-12-24T18:30:00+01:00)")
    if urlsplit(args.url).scheme not in ("http", "https") or not urlsplit(args.url).netloc:
        return fail(f"--url {args.url!r} is not an http(s) URL of the shop's page")
    if args.campaigns:
        try:
            rules = {r["id"]: r for r in load_campaigns(Path(args.campaigns))}
        except CampaignsError as exc:
            return fail(f"{exc}\n{args.campaigns} has problems")
        if args.campaign not in rules:
            return fail(f"{args.campaigns} has no campaign {args.campaign!r} (it has {', '.join(sorted(rules))})")
        variants = [v["id"] for v in rules[args.campaign]["variants"]]
        if args.variant and args.variant not in variants:
            return fail(f"campaign {args.campaign!r} has no variant {args.variant!r} (it has {', '.join(variants)})")
    key = signing_key(Path(args.dev_vars))
    if key is None:
        return 2
    country = (args.country or "").upper()
    now = int(time.time())
    shown = preview.Preview(
        args.campaign, args.variant, args.person, country,
        f"{country}-{args.region.upper()}" if args.region and country else (args.region or "").upper(),
        args.device or "", args.timezone or "", at,
        _utm_flags(args),
        now + args.minutes * 60)
    try:
        token = preview.sign(shown, now, key)
    except ValueError as exc:
        return fail(str(exc))
    print(f"{args.url}{'&' if '?' in args.url else '?'}{preview.PARAM}={token}")
    until = datetime.fromtimestamp(shown.expires).astimezone().isoformat(timespec="minutes")
    print(f"preview of campaign {args.campaign}{f' variant {args.variant}' if args.variant else ''} "
          f"as {args.person or 'a new visitor'}, valid until {until}: not stored, not counted", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from .batch.inputs import InputError, load_shop
    from .batch.seed import load_config
    from .batch.seedgen import generate
    from .quality.evaluate import BASELINES, evaluate

    cfg = load_config(Path(args.config))
    if args.catalog and args.events:
        try:
            shop, report = load_shop(Path(args.catalog), Path(args.events), None, strict=False, now=None)
        except (InputError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(report.summary(), file=sys.stderr)
    elif args.catalog or args.events:
        print("error: give both --catalog and --events, or neither (the seed shop)", file=sys.stderr)
        return 2
    else:
        shop = generate(cfg)
    baselines = tuple(BASELINES) if args.baselines is None else tuple(b for b in args.baselines.split(",") if b)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown or args.k < 1 or args.holdout < 1:
        print(f"error: {'unknown baseline(s) ' + ', '.join(map(repr, unknown)) if unknown else 'k and holdout are ≥ 1'}"
              f" (baselines: {', '.join(BASELINES)})", file=sys.stderr)
        return 2
    if args.protocol == "next-basket":
        from .quality.nextbasket import evaluate_next_basket

        result = evaluate_next_basket(shop, cfg, k=args.k, tune=not args.no_tune, tune_budget=args.tune_budget,
                                      progress=_progress)
    else:
        result = evaluate(shop, cfg, k=args.k, holdout=args.holdout, min_events=args.min_events,
                          baselines=baselines, tune=not args.no_tune, tune_budget=args.tune_budget,
                          progress=_progress)
    print(json.dumps(result.as_json(), indent=1) if args.json else result.table())
    return 0


def _port_taken(host: str, port: int, make_var: str) -> bool:
    """A taken port is the user's to fix: say which, and what to set.

    Probed as the server itself binds (``SO_REUSEADDR``, as uvicorn does): connections of a server just stopped,
    still in ``TIME_WAIT``, do not make the port taken, so `make dev` right after `make dev` starts; a socket
    listening there does."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            print(f"error: port {port} on {host} is already in use; stop what uses it, or pick another: "
                  f"make dev {make_var}={port + 10} (this command: --port)", file=sys.stderr)
            return True
    return False


def cmd_origin(args: argparse.Namespace) -> int:
    import uvicorn

    from .origin.app import create_app
    from .origin.artifacts import data_dir

    if _port_taken(args.host, args.port, "ORIGIN_PORT"):
        return 2
    secret = worker_vars(Path(args.dev_vars)).get("ORIGIN_SECRET", "")
    try:
        app = create_app(data_dir(args.data, args.database), secret, args.database)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc} (set ORIGIN_SECRET; run `make seed` for the data)", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_shop(args: argparse.Namespace) -> int:
    import uvicorn

    from .shop.app import create_app

    if _port_taken(args.host, args.port, "SHOP_PORT"):
        return 2
    key = signing_key(Path(args.dev_vars))
    if key is None:
        return 2
    inputs = Path(args.inputs)
    app = create_app(inputs / "catalog.csv", inputs / "shoppers.csv", args.edge, key)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _cloudflare_ids(args: argparse.Namespace) -> tuple[str, str]:
    account = args.account_id or os.environ.get("CLOUDFLARE_ACCOUNT_ID", "")
    namespace = args.namespace_id or os.environ.get("KV_NAMESPACE_ID", "")
    if not account or not namespace:
        raise ValueError("cloudflare target needs --account-id and --namespace-id "
                         "(or CLOUDFLARE_ACCOUNT_ID and KV_NAMESPACE_ID)")
    return account, namespace


def _target_name(args: argparse.Namespace) -> str:
    """The name under which a target's pushed state is kept (no connection made)."""
    if args.target == "local":
        return "local"
    account, namespace = _cloudflare_ids(args)
    return f"cloudflare-{account}-{namespace}"


def _target(args: argparse.Namespace) -> object:
    """The KV target from flags and environment; the API token is read from the environment only."""
    if args.target == "local":
        from .kv.localkv import LocalKV

        return LocalKV(Path(args.persist))
    from .kv.cloudflare import API, CloudflareKV

    return CloudflareKV(*_cloudflare_ids(args), os.environ.get("CLOUDFLARE_API_TOKEN", ""),
                        base_url=args.api_base or API, max_attempts=args.max_attempts)


def _open_target(args: argparse.Namespace) -> Any:
    """The KV target, or ``None`` after saying on stderr why it cannot be had (bad ids, no token...)."""
    from .kv.cloudflare import PushError

    try:
        return _target(args)
    except (ValueError, PushError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_push(args: argparse.Namespace) -> int:
    from .kv.cloudflare import PushError
    from .kv.plan import Build
    from .kv.push import BAD_INPUT, dry_run, push

    if args.campaigns:
        return _push_campaigns(args)
    try:
        build = Build.load(Path(args.build)).without(_erased(args))  # an erased person is never pushed back
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot read the build in {args.build}: {exc}", file=sys.stderr)
        return BAD_INPUT
    try:
        if args.dry_run:
            return dry_run(build, Path(args.state_dir), _target_name(args))
        target = _target(args)
    except (ValueError, PushError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    return push(build, target, Path(args.state_dir), sync=args.resync)  # type: ignore[arg-type]


def _push_campaigns(args: argparse.Namespace) -> int:
    from .campaigns.publish import publish
    from .kv.push import BAD_INPUT

    if args.dry_run or args.resync:
        print("error: --campaigns pushes one record: --dry-run and --resync are for whole builds", file=sys.stderr)
        return BAD_INPUT
    build_dir = Path(args.build)
    if not (build_dir / "generation.txt").exists():
        print(f"error: {build_dir.resolve()}: not a build (no generation.txt); name the build the target serves "
              "with --build", file=sys.stderr)
        return BAD_INPUT
    target = _open_target(args)
    if target is None:
        return BAD_INPUT
    return publish(Path(args.campaigns), build_dir, target, Path(args.state_dir), database=args.database)


def cmd_refresh(args: argparse.Namespace) -> int:
    from .batch.refresh import Refresher, follow
    from .kv.cloudflare import PushError
    from .kv.push import BAD_INPUT
    from .origin.artifacts import data_dir

    try:
        refresher = Refresher(data_dir(args.data, args.database), Path(args.state_dir), _target_name(args),
                              database=args.database)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        print(f"error: {exc} (run `make seed` or a build for the origin data)", file=sys.stderr)
        return BAD_INPUT
    make_target = lambda: _target(args)  # noqa: E731 - a fresh target per push (a push closes its target)
    try:
        if args.follow:
            return follow(refresher, make_target, args.interval, sys.stderr)  # type: ignore[arg-type]
        status, r = refresher.once(make_target)  # type: ignore[arg-type]
    except PushError as exc:
        print(f"refresh incomplete: {exc}; rerun to resume", file=sys.stderr)
        return 3
    print(f"refresh: {r.people} people with new events, {r.computed} profiles, {r.pushed} pushed in "
          f"{r.seconds:.2f}s (events up to #{r.seq})", file=sys.stderr)
    return status


def _no_event_log(data: Path | None, database: str | None) -> str | None:
    """Why the event log cannot be read (a SQLite data directory without one), else ``None``."""
    if data is not None and not database and not (data / "events.sqlite").exists():
        return f"no event log in {data} (events.sqlite): nothing has been ingested yet"
    return None


def cmd_report(args: argparse.Namespace) -> int:
    import time

    from personalizer import keys

    from .events.report import analyse, banner_rules, parse_since, render_html, render_text
    from .origin.artifacts import ModelSource, data_dir
    from .store import StoreUnavailable, open_stores

    data = data_dir(args.data, args.database)
    try:
        since = parse_since(args.since, time.time())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if (missing := _no_event_log(data, args.database)) is not None:
        print(f"error: {missing}", file=sys.stderr)
        return 2

    def compute() -> Any:
        stores = open_stores(data or Path("."), args.database)
        generation = ModelSource(data, stores.profiles).load().generation
        rules = banner_rules(stores.profiles.record(keys.banners(generation)))
        return analyse(stores.log.events(), rules, window_s=int(args.window_hours * 3600), since=since,
                       mde=args.mde / 100)

    try:
        report = compute()
    except (StoreUnavailable, RuntimeError, ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.serve:
        return _serve_report(lambda: render_html(compute(), refresh_s=args.refresh), args.host, args.port)
    print(render_text(report), end="")
    if args.html:
        Path(args.html).write_text(render_html(report))
        print(f"report: {args.html}", file=sys.stderr)
    return 0


def _serve_report(page: Any, host: str, port: int) -> int:
    """The report page, computed again on each request (it refreshes itself), until Ctrl-C."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404)
                return
            try:
                body = page().encode()
                status = 200
            except Exception as exc:  # noqa: BLE001 - a store out of reach: say so on the page, keep serving
                body = f"<!doctype html><p>the report cannot be computed now: {type(exc).__name__}</p>".encode()
                status = 503
            self.send_response(status)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("cache-control", "no-store")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    if _port_taken(host, port, "--port"):
        return 2
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"report: http://{host}:{port}/ (computed on each request; Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from .kv.push import BAD_INPUT, rollback

    target = _open_target(args)
    if target is None:
        return BAD_INPUT
    return rollback(target, Path(args.state_dir))


def cmd_export_events(args: argparse.Namespace) -> int:
    import time

    from .events.report import parse_since
    from .store import StoreUnavailable, open_stores
    from .store.export import export_events

    try:
        since = parse_since(args.since, time.time()) if args.since else None
        if (missing := _no_event_log(Path(args.data), args.database)) is not None:
            raise ValueError(missing)
        stores = open_stores(Path(args.data), args.database)
        done = export_events(stores.log, args.out, since=since,
                             progress=_progress)
    except (StoreUnavailable, RuntimeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"export-events: {done.rows:,} rows in {done.files} new file(s) in {args.out}, the log read up to event "
          f"#{done.seq} ({done.seconds:.1f}s); build from it: personalizer build --events {args.out} ...",
          file=sys.stderr)
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from personalizer import keys

    from .kv.cloudflare import PushError
    from .kv.push import BAD_INPUT, PARTIAL
    from .privacy.erase import erase_person
    from .privacy.tombstones import Tombstones

    if not keys.is_valid_id(args.person):
        print(f"error: invalid person id {args.person!r}", file=sys.stderr)
        return BAD_INPUT
    target = _open_target(args)
    if target is None:
        return BAD_INPUT
    builds = [Path(b) for b in (args.build or ["kv-seed/out"])]
    try:
        report = erase_person(args.person, target, Path(args.data), Path(args.state_dir),
                              Tombstones(Path(args.tombstones) if args.tombstones else None), builds, args.database)
    except PushError as exc:
        print(f"erase incomplete: {exc}; rerun (erase is idempotent)", file=sys.stderr)
        return PARTIAL
    print(report, file=sys.stderr)
    return 0


def _tombstones_flag(s: argparse.ArgumentParser) -> None:
    s.add_argument("--tombstones", help="the durable list of erased people (default: $PZ_TOMBSTONES, else "
                                        ".personalizer/tombstones.txt)")


def _database_flag(s: argparse.ArgumentParser) -> None:
    s.add_argument("--database", default=os.environ.get("PZ_DATABASE_URL") or None,
                   help="the store: a postgresql:// URL (default: $PZ_DATABASE_URL; none: the SQLite files in the "
                        "origin data directory)")


def cmd_db(args: argparse.Namespace) -> int:
    from .store import redacted
    from .store.postgres import is_url, upgrade

    if not args.database or not is_url(args.database):
        print("error: name the database: --database postgresql://... or PZ_DATABASE_URL (the SQLite files need "
              "no upgrade: they are created as they are)", file=sys.stderr)
        return 2
    try:
        before, after = upgrade(args.database)
    except Exception as exc:  # a server that is not there, a role without rights, a newer schema: say which
        print(f"error: {redacted(args.database)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"db upgrade: {redacted(args.database)}: schema version {before} -> {after}"
          f"{' (already current)' if before == after else ''}", file=sys.stderr)
    return 0


def _erased(args: argparse.Namespace) -> frozenset[str]:
    from .privacy.tombstones import Tombstones

    return Tombstones(Path(args.tombstones) if args.tombstones else None).load()


def _target_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--target", choices=("local", "cloudflare"), default="local")
    s.add_argument("--persist", default=".wrangler/state", help="local KV state directory")
    s.add_argument("--account-id", help="Cloudflare account id (or CLOUDFLARE_ACCOUNT_ID)")
    s.add_argument("--namespace-id", help="KV namespace id (or KV_NAMESPACE_ID)")
    s.add_argument("--api-base", help="Cloudflare API base URL (default: the public API)")
    s.add_argument("--max-attempts", type=_positive_int, default=6,
                   help="tries per Cloudflare API request, 429 and 5xx retried with backoff from 1 s doubling "
                        "(default 6, about 30 s at worst; 1 fails at once)")
    s.add_argument("--state-dir", default=".personalizer/state",
                   help="where the last pushed manifest and the resume journal of each target live")


SEED_INPUTS = "--catalog kv-seed/out/inputs/catalog.csv --events kv-seed/out/inputs/events.csv"
EXAMPLES = {
    "sign-user": "personalizer sign-user c00001",
    "sign-visitor": "personalizer sign-visitor v123",
    "seed": "personalizer seed",
    "build": f"personalizer build {SEED_INPUTS} --shoppers kv-seed/out/inputs/shoppers.csv --out build/today",
    "evaluate": f"personalizer evaluate {SEED_INPUTS} --json",
    "origin": "personalizer origin --port 8788",
    "push": "personalizer push --build build/today --target local --dry-run",
    "rollback": "personalizer rollback --target local",
    "erase": "personalizer erase --person c00002 --target local --build build/today",
    "refresh": "personalizer refresh --target local --follow",
    "report": "personalizer report --html report.html",
    "shop": "personalizer shop --port 8789 --edge http://127.0.0.1:8787",
    "campaigns": "personalizer campaigns check kv-seed/campaigns.toml",
    "preview-link": "personalizer preview-link --campaign restock --variant restock-b",
    "db": "personalizer db upgrade --database postgresql://pz@127.0.0.1/pz",
    "pseudonym": "personalizer pseudonym anna@example.com",
    "export-events": "personalizer export-events --out lake/events --since 30d",
}


def _add(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text,
                                                     epilog=f"example: {EXAMPLES[name]}")
    return parser


def parser() -> argparse.ArgumentParser:
    """The whole command line: every command, its flags, its help and example."""
    p = argparse.ArgumentParser(prog="personalizer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples (the seed's files; `make seed` writes them):\n" + "\n".join(
                                    f"  {line}" for line in EXAMPLES.values()))
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, what in (("sign-user", "a pz_uid cookie value for a customer id"),
                       ("sign-visitor", "a pz_vid cookie value for a visitor id")):
        s = _add(sub, name, f"print {what}, signed with the first PZ_SIGNING_KEYS key")
        s.add_argument("id")
        s.add_argument("--issued-at", type=int, help="epoch seconds (default: now)")
        s.add_argument("--dev-vars", default=".dev.vars")
        s.set_defaults(func=cmd_sign)
    s = _add(sub, "seed", "generate the demo shop and its v1 records (kv-seed/out/kv.json)")
    s.add_argument("--config", default="kv-seed/seed.toml")
    s.add_argument("--out", default="kv-seed/out")
    _tombstones_flag(s)
    _database_flag(s)
    s.set_defaults(func=cmd_seed)
    s = _add(sub, "build", "build a generation's records from a catalog and events (csv, jsonl, parquet)")
    s.add_argument("--catalog", required=True, help="id, category, title, price, url, image[, stock, currency, "
                                                    "previous_price]")
    s.add_argument("--events", required=True, help="shopper, product, kind (view|add_to_cart|remove_from_cart|"
                                                   "purchase), ts[, quantity, order]; a recognised export; or "
                                                   "`store`: the store's history and the customers' beacons since "
                                                   "(--database, else OUT/origin's SQLite files)")
    s.add_argument("--shoppers", help="id, loyalty (optional; else loyalty tiers come from the config's rules)")
    s.add_argument("--config", default="kv-seed/seed.toml", help="list sizes, decay, segment rules")
    s.add_argument("--out", required=True, help="output directory (kv.json, manifest.json, origin/)")
    s.add_argument("--on-bad-row", choices=("skip", "fail"), default="skip",
                   help="skip bad rows (each reported with file and line) or fail the build")
    s.add_argument("--now", type=int, help="the build's 'now' in epoch seconds (default: the last event)")
    s.add_argument("--engine", choices=ENGINES, default="duckdb",
                   help="where the relational stages run: duckdb (in process, out of core; the default) or spark "
                        "(PZ_SPARK_MASTER, default local[2]; needs pip install '.[spark]' and Java 17+)")
    s.add_argument("--full", action="store_true",
                   help="recompute every profile (default: reuse those whose shopper's events did not change)")
    s.add_argument("--campaigns", help="the shop's campaigns file (campaigns.toml: the hero's banners; checked "
                                       "first, as `personalizer campaigns check` does); none: no banners")
    s.add_argument("--map", action="append", default=[], metavar="KIND.COLUMN=YOURS",
                   help="take a column of the build's from one of your file's, e.g. catalog.id=Handle,"
                        "events.shopper=customer_email (repeatable; @FILE: one per line)")
    s.add_argument("--currency", default="EUR", help="the catalog's currency when its rows do not say (ISO 4217)")
    s.add_argument("--no-tune", action="store_true",
                   help="build with the config's constants (default: tune them on the shop's own data first)")
    s.add_argument("--tune-budget", type=float, default=TUNE_BUDGET_S, metavar="SECONDS",
                   help=f"the tuning search's time budget (default {TUNE_BUDGET_S:.0f})")
    s.add_argument("--tune-people", type=int, default=TUNE_PEOPLE, metavar="N",
                   help=f"tune on at most this many shoppers, drawn with the config's seed (default {TUNE_PEOPLE:,})")
    _tombstones_flag(s)
    _database_flag(s)
    s.set_defaults(func=cmd_build)
    s = _add(sub, "pseudonym", "print the pseudonymous id the build gives an email or other identifier (keyed by "
                               "PZ_ID_KEY): what the shop's login code signs as pz_uid")
    s.add_argument("identifier", nargs="+")
    s.add_argument("--dev-vars", default=".dev.vars")
    s.set_defaults(func=cmd_pseudonym)
    s = _add(sub, "campaigns", "the shop's campaigns file: `check FILE` reports every problem with its line and "
                               "field (exit 2), or how many campaigns and variants it holds")
    s.add_argument("action", choices=("check", "preview"))
    s.add_argument("file")
    s.add_argument("--as", dest="person", help="preview: the shopper (a customer or visitor id of the build); "
                                               "none: a new visitor")
    s.add_argument("--build", default="kv-seed/out", help="preview: the build whose records to read")
    s.add_argument("--at", help="preview: the moment, RFC 3339 with offset (default: now)")
    s.add_argument("--country", help="preview: ISO 3166-1 country, as request.cf gives it")
    s.add_argument("--region", help="preview: the region's code within the country (BY for DE-BY)")
    s.add_argument("--timezone", default="UTC", help="preview: the visitor's IANA time zone")
    s.add_argument("--device", choices=("mobile", "desktop"), help="preview: the device (default: cannot tell)")
    s.add_argument("--no-consent", action="store_true", help="preview: a visitor who declined consent")
    for name in ("campaign", "source", "medium"):
        s.add_argument(f"--utm-{name}", help=f"preview: the page's utm_{name}")
    s.set_defaults(func=cmd_campaigns)
    s = _add(sub, "preview-link", "print a link to the shop's page that shows one campaign, signed with the first "
                                  "PZ_SIGNING_KEYS key, for at most a day (not stored, not counted)")
    s.add_argument("--campaign", required=True, help="the campaign's id")
    s.add_argument("--variant", help="its variant (default: the one the shopper would get)")
    s.add_argument("--as", dest="person", help="seen as this signed-in customer (default: a new visitor)")
    s.add_argument("--country", help="ISO 3166-1 country, as request.cf gives it (default: the request's)")
    s.add_argument("--region", help="the region's code within the country (BY for DE-BY)")
    s.add_argument("--timezone", help="the visitor's IANA time zone, for local hours (default: the request's)")
    s.add_argument("--device", choices=("mobile", "desktop"), help="the device (default: the request's)")
    s.add_argument("--at", help="the moment the campaigns are tried at, RFC 3339 with offset (default: now)")
    for name in ("campaign", "source", "medium"):
        s.add_argument(f"--utm-{name}", help=f"the page's utm_{name} (default: the page's own)")
    s.add_argument("--minutes", type=int, default=60, help="how long the link works (1-1440, default 60)")
    s.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('SHOP_PORT', '8789')}/",
                   help="the shop's page (default: the demo shop of `make dev`)")
    s.add_argument("--campaigns", help="a campaigns file to check the campaign and variant against")
    s.add_argument("--dev-vars", default=".dev.vars")
    s.set_defaults(func=cmd_preview_link)
    s = _add(sub, "evaluate", "the project's lists against popularity, item-kNN, EASE and ALS (or, for orders, "
                              "P-TopFreq, G-TopFreq and TIFU-KNN) on held-out data")
    s.add_argument("--catalog", help="as for build (default: the seed shop, with its known latent tastes)")
    s.add_argument("--events")
    s.add_argument("--config", default="kv-seed/seed.toml")
    s.add_argument("--k", type=int, default=12)
    s.add_argument("--holdout", type=int, default=3, help="last interactions held out per shopper")
    s.add_argument("--min-events", type=int, default=6, help="people with fewer interactions are left out")
    s.add_argument("--baselines", help="comma-separated, from: count popularity, item-kNN (cosine), EASE, "
                                       "ALS (implicit) (default: all; '' for none)")
    s.add_argument("--json", action="store_true", help="print the results as JSON (the table otherwise)")
    s.add_argument("--no-tune", action="store_true",
                   help="leave out the tuned personal list (default: tune on the training part, then score it)")
    s.add_argument("--tune-budget", type=float, default=TUNE_BUDGET_S, metavar="SECONDS")
    s.add_argument("--protocol", choices=("last-items", "next-basket"), default="last-items",
                   help="last-items: each person's last --holdout interactions, new to them (default); "
                        "next-basket: each person's last order whole, with its repeat and explore parts, against "
                        "P-TopFreq, G-TopFreq and TIFU-KNN")
    s.set_defaults(func=cmd_evaluate)
    s = _add(sub, "origin", "serve the origin (the edge's miss path) with uvicorn")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8788)
    s.add_argument("--data", help="the model artifacts, read only (default: kv-seed/out/origin; with --database: "
                                  "the database's, followed as builds replace them)")
    s.add_argument("--dev-vars", default=".dev.vars")
    _database_flag(s)
    s.set_defaults(func=cmd_origin)
    s = _add(sub, "db", "the PostgreSQL store's schema: `db upgrade` applies the migrations it lacks (never done at "
                        "request time)")
    s.add_argument("action", choices=("upgrade",))
    _database_flag(s)
    s.set_defaults(func=cmd_db)
    s = _add(sub, "shop", "serve the demo storefront, which embeds the worker with pz.js (and is its PAGES_ORIGIN)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8789)
    s.add_argument("--edge", default="http://127.0.0.1:8787", help="the worker's base URL (pz.js, /v1/page)")
    s.add_argument("--inputs", default="kv-seed/out/inputs", help="catalog.csv and shoppers.csv of the shop")
    s.add_argument("--dev-vars", default=".dev.vars")
    s.set_defaults(func=cmd_shop)
    s = _add(sub, "push", "push a build to KV: diff-only, resumable, manifest flipped last")
    s.add_argument("--build", default="kv-seed/out", help="build output (kv.json, generation.txt)")
    s.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    s.add_argument("--campaigns", help="push only this campaigns file's banner record, for the generation the "
                                       "target serves (checked first; the build in --build is updated too)")
    s.add_argument("--resync", action="store_true",
                   help="first read the target's keys (and the digests their metadata carries) back into this "
                        "machine's record of it, then push what differs: after a KV reset, `make clean`, or a "
                        "push from another machine")
    _tombstones_flag(s)
    _target_flags(s)
    _database_flag(s)  # --campaigns: the origin's copy of the banner record
    s.set_defaults(func=cmd_push)
    s = _add(sub, "refresh", "recompute the profiles of people with new events (the event log) and push the "
                             "changed ones")
    s.add_argument("--data", help="origin data directory (default: kv-seed/out/origin; with --database: the "
                                  "model artifacts are the database's)")
    s.add_argument("--follow", action="store_true", help="keep refreshing until Ctrl-C (which lets the batch in "
                                                         "flight finish)")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --follow")
    _target_flags(s)
    _database_flag(s)
    s.set_defaults(func=cmd_refresh)
    s = _add(sub, "report", "experiments (banner variants against their control) and slots/tiers, from the "
                            "event log")
    s.add_argument("--data", help="origin data directory (default: kv-seed/out/origin; with --database: the "
                                  "model artifacts are the database's)")
    s.add_argument("--since", help="7d, 12h, a date (2026-11-01) or epoch seconds (default: everything)")
    s.add_argument("--window-hours", type=float, default=24.0, help="attribution window after an exposure")
    s.add_argument("--html", help="also write a self-contained HTML page with charts here")
    s.add_argument("--serve", action="store_true", help="serve the page live instead (computed on each request, "
                                                         "refreshing itself)")
    s.add_argument("--host", default="127.0.0.1", help="--serve: the address to listen on (default loopback only)")
    s.add_argument("--port", type=int, default=8790, help="--serve: the port")
    s.add_argument("--refresh", type=int, default=60, help="--serve: seconds between the page's reloads")
    s.add_argument("--mde", type=float, default=1.0, help="the smallest click-through difference worth finding, in "
                                                          "percentage points (the verdicts and the mSPRT's tau)")
    _database_flag(s)
    s.set_defaults(func=cmd_report)
    s = _add(sub, "export-events", "append the store's new events to a Parquet directory partitioned by day (or an "
                                   "object-store URL): the batch's input on an engine, incremental")
    s.add_argument("--out", required=True, help="the directory (or s3://bucket/prefix) to append to")
    s.add_argument("--since", help="leave out events older than this (7d, a date, epoch seconds), on the first run")
    s.add_argument("--data", default="kv-seed/out/origin", help="the origin data directory (its SQLite event log; "
                                                               "with --database: the database's)")
    _database_flag(s)
    s.set_defaults(func=cmd_export_events)
    s = _add(sub, "rollback", "flip pz1:manifest back to the previously pushed generation")
    _target_flags(s)
    s.set_defaults(func=cmd_rollback)
    s = _add(sub, "erase", "remove a person from KV, the profile store, the event log and build artifacts "
                           "(privacy); a tombstone keeps them out of every later build and push")
    s.add_argument("--person", required=True)
    s.add_argument("--data", default="kv-seed/out/origin", help="origin data directory")
    s.add_argument("--build", action="append", help="a build directory whose artifacts to scrub (repeatable; "
                                                     "default: kv-seed/out)")
    _tombstones_flag(s)
    _target_flags(s)
    _database_flag(s)
    s.set_defaults(func=cmd_erase)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FileNotFoundError as exc:  # default paths are relative to the working directory: say which file
        where = Path(exc.filename).resolve() if exc.filename else exc
        print(f"error: {where}: no such file (the defaults are relative to the current directory; run from the "
              "project's, or name the file)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
