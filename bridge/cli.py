"""The `wsmigrate` command line: `serve` (and, as the toolkit grows, operator commands)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import uvicorn

from bridge.settings import Settings

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
