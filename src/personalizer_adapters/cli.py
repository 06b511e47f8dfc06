"""The `personalizer` command line for developers and the origin data team."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from personalizer.config import parse_config
from personalizer.identity import UID, VID, sign

ROOT = Path(__file__).resolve().parents[2]


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


def cmd_sign(args: argparse.Namespace) -> int:
    config = parse_config(worker_vars(Path(args.dev_vars)))
    if not config.signing_keys:
        print("error: no signing key: set PZ_SIGNING_KEYS in the environment or in .dev.vars", file=sys.stderr)
        return 2
    try:
        token = sign(UID if args.cmd == "sign-user" else VID, args.id, int(args.issued_at or time.time()),
                     config.signing_keys[0])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from .seed import write_seed  # numpy is imported only by the commands that build

    t0 = time.perf_counter()
    built = write_seed(Path(args.config), Path(args.out), Path(args.fallback) if args.fallback else None)
    size = sum(len(v) for v in built.records.values())
    print(f"seed: generation {built.generation}: {len(built.records)} records, {size / 1e6:.1f} MB "
          f"-> {args.out}/kv.json in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


def cmd_origin(args: argparse.Namespace) -> int:
    import uvicorn

    from .origin import create_app

    secret = worker_vars(Path(args.dev_vars)).get("ORIGIN_SECRET", "")
    try:
        app = create_app(Path(args.data), secret)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc} (set ORIGIN_SECRET; run `make seed` for the data)", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="personalizer", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, what in (("sign-user", "a pz_uid cookie value for a customer id"),
                       ("sign-visitor", "a pz_vid cookie value for a visitor id")):
        s = sub.add_parser(name, help=f"print {what}, signed with the first PZ_SIGNING_KEYS key")
        s.add_argument("id")
        s.add_argument("--issued-at", type=int, help="epoch seconds (default: now)")
        s.add_argument("--dev-vars", default=str(ROOT / ".dev.vars"))
        s.set_defaults(func=cmd_sign)
    s = sub.add_parser("seed", help="generate the demo shop and its v1 records (kv-seed/out/kv.json)")
    s.add_argument("--config", default=str(ROOT / "kv-seed" / "seed.toml"))
    s.add_argument("--out", default=str(ROOT / "kv-seed" / "out"))
    s.add_argument("--fallback", default=str(ROOT / "src" / "personalizer" / "fallback.py"),
                   help="where to write the compiled default tier ('' to skip)")
    s.set_defaults(func=cmd_seed)
    s = sub.add_parser("origin", help="serve the origin (the edge's miss path) with uvicorn")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8788)
    s.add_argument("--data", default=str(ROOT / "kv-seed" / "out" / "origin"))
    s.add_argument("--dev-vars", default=str(ROOT / ".dev.vars"))
    s.set_defaults(func=cmd_origin)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
