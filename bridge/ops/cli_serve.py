"""`wsmigrate serve`: an application under uvicorn with wsmigrate's WebSocket protocol.

Settings reach every worker through `WSMIGRATE_*` variables (docs/operations.md), so the options
here are turned into those variables before uvicorn starts its workers.
"""

from __future__ import annotations

import argparse
import inspect
import os
import secrets
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.importer import ImportFromStringError, import_from_string

from wsmigrate.bridge.errors import SettingsError
from wsmigrate.bridge.ops.cli_output import ADMIN_TOKEN_ENV, EXIT_OK, EXIT_USAGE, CommandError
from wsmigrate.bridge.server.settings import Settings
from wsmigrate.bridge.server.ws_protocol import UVICORN_WS_OPTIONS
from wsmigrate.metrics.exposition import MULTIPROCESS_ENV, prepare_multiprocess_dir

APP_ENV = "WSMIGRATE_APP"


def load_app() -> Any:
    """The application `--app` names, in each worker: a factory is called, an app is taken as is.

    A function (or bound method) is a factory; anything else (a FastAPI or Starlette instance, any
    ASGI callable object) is the app. uvicorn's own `--factory` makes the user say which, and a
    wrong guess ends in "missing 3 required positional arguments"."""
    target = os.environ.get(APP_ENV, "")
    try:
        loaded = import_from_string(target)
    except ImportFromStringError as exc:
        raise CommandError(f"cannot load --app {target!r}: {exc}", EXIT_USAGE) from None
    return loaded() if inspect.isfunction(loaded) or inspect.ismethod(loaded) else loaded


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run an application with wsmigrate's uvicorn options",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--app", default=os.environ.get("WSMIGRATE_APP"),
                       help="the app, module:attribute: a function returning it (a factory) or the app itself "
                            "(default: $WSMIGRATE_APP)")
    serve.add_argument("--app-dir", default=".", help="directory put first on sys.path to import --app")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--bus", default=None, help="bus URL: memory:// (default) or redis://host:port/db")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (several need --bus redis://)")
    serve.add_argument("--admin-token", default=None,
                       help=f"enable the admin API with this bearer token (default: ${ADMIN_TOKEN_ENV})")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                       help="uvicorn's log level (default info)")
    serve.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    if not args.app:
        raise CommandError("which application? --app module:factory (or WSMIGRATE_APP), e.g. myapp.main:create_app",
                           EXIT_USAGE)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    overrides = {"bus_url": args.bus, "admin_token": args.admin_token,
                 "self_url": os.environ.get("WSMIGRATE_SELF_URL") or f"http://{host}:{args.port}",
                 "probe_token": os.environ.get("WSMIGRATE_PROBE_TOKEN") or secrets.token_urlsafe(24)}
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        raise CommandError(f"invalid setting: {exc}", EXIT_USAGE) from None
    if args.workers > 1 and settings.bus_url.startswith("memory"):
        raise CommandError(f"{args.workers} workers cannot share the in-memory bus (each would see only its own "
                           "events): give a Redis bus (--bus redis://127.0.0.1:6379/0) or run one worker", EXIT_USAGE)
    os.environ.update(settings.to_env())
    if args.workers > 1 or os.environ.get(MULTIPROCESS_ENV):
        directory = Path(os.environ.get(MULTIPROCESS_ENV) or "var/prometheus-multiproc").resolve()
        prepare_multiprocess_dir(directory)
        os.environ[MULTIPROCESS_ENV] = str(directory)
    print(f"wsmigrate: serving {args.app} on http://{args.host}:{args.port} "
          f"(bus {settings.bus_url.split('@')[-1]})", flush=True)
    if settings.auth:
        print("wsmigrate: auth ON: clients need a token (Authorization: Bearer, wsmigrate_token cookie, "
              "or ?token= on WebSockets)", flush=True)
    else:
        print("wsmigrate: auth OFF (WSMIGRATE_AUTH=off): development and tests only", flush=True)
    print(f"wsmigrate: admin API {'enabled' if settings.admin_token else 'disabled (set WSMIGRATE_ADMIN_TOKEN)'}",
          flush=True)
    os.environ[APP_ENV] = args.app  # every worker loads it through `load_app`
    uvicorn.run(
        f"{__name__}:load_app",
        factory=True,
        app_dir=args.app_dir,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
        **UVICORN_WS_OPTIONS,  # type: ignore[arg-type]
    )
    return EXIT_OK
