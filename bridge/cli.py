"""The `wsmigrate` command line: `serve` (and, as the toolkit grows, operator commands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

import uvicorn

from bridge.admin_client import AdminClient, AdminError, render_flags
from bridge.settings import Settings
from bridge.stages import Stage

log = logging.getLogger("wsmigrate")

WS_MAX_SIZE = 1024 * 1024  # protocol-level cap; the application rejects frames over 64 KiB itself


def _serve(args: argparse.Namespace) -> int:
    overrides = {"database_url": args.database_url, "bus_url": args.bus}
    settings = Settings.from_env(**overrides)
    os.environ.update(settings.to_env())
    print(f"wsmigrate: serving on http://{args.host}:{args.port} (bus {settings.bus_url.split('@')[-1]}, "
          f"database {settings.database_url.split('@')[-1]})", flush=True)
    uvicorn.run(
        "bridge.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        ws_max_size=WS_MAX_SIZE,
        timeout_graceful_shutdown=10,
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from bridge.simulate import render, simulate

    report = asyncio.run(simulate(args.url, legacy=args.legacy, unified=args.unified, duration=args.duration,
                                  seed=args.seed))
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def _admin(args: argparse.Namespace) -> AdminClient:
    token = args.token or os.environ.get("WSMIGRATE_ADMIN_TOKEN", "")
    if not token:
        raise SystemExit("wsmigrate: an admin token is needed: --token or WSMIGRATE_ADMIN_TOKEN")
    return AdminClient(args.url, token)


def _flags(args: argparse.Namespace) -> int:
    client = _admin(args)
    try:
        if args.action == "show":
            view = client.flags()
        elif args.action == "set":
            view = client.set_stage(args.event_type, args.stage, force=args.force)
        elif args.action == "kill":
            view = client.kill(True)
        else:
            view = client.kill(False)
    except AdminError as exc:
        print(f"wsmigrate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(view, indent=2) if args.json else render_flags(view))
    return 0


def _add_admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument("--token", default=None, help="admin token (default: $WSMIGRATE_ADMIN_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsmigrate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the reference server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start-up)")
    serve.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: sqlite:///./wsmigrate.db)")
    serve.add_argument("--bus", default=None, help="bus URL: memory:// (default) or redis://host:port/db")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_serve)

    sim = commands.add_parser("simulate", help="drive a mixed legacy/unified client population")
    sim.add_argument("--url", default="http://127.0.0.1:8000")
    sim.add_argument("--legacy", type=int, default=10, help="legacy clients (a socket per view)")
    sim.add_argument("--unified", type=int, default=10, help="unified clients (one socket each)")
    sim.add_argument("--duration", type=float, default=10.0, help="seconds")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(handler=_simulate)

    flags = commands.add_parser("flags", help="show or change rollout flags through the admin API")
    flag_actions = flags.add_subparsers(dest="action", required=True)
    for name, text in (("show", "print every event type's stage"), ("kill", "force every type to off"),
                       ("unkill", "release the kill switch")):
        _add_admin_options(flag_actions.add_parser(name, help=text))
    set_parser = flag_actions.add_parser("set", help="move one event type to a stage")
    set_parser.add_argument("event_type")
    set_parser.add_argument("stage", choices=[s.value for s in Stage])
    set_parser.add_argument("--force", action="store_true", help="allow skipping stages forward")
    _add_admin_options(set_parser)
    flags.set_defaults(handler=_flags)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
