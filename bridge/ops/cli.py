"""The `wsmigrate` command line: `serve` an application, and the operator commands (`flags`,
`report`, `promote`, `simulate`), which talk to a running server over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import uvicorn

from wsmigrate.bridge.ops.admin_client import AdminClient, AdminError, render_flags
from wsmigrate.bridge.ops.report import Thresholds, build_fleet_report, legacy_only_broadcasts, render_legacy_only
from wsmigrate.bridge.ops.report import render as render_report
from wsmigrate.bridge.server.settings import Settings
from wsmigrate.bridge.server.ws_protocol import UVICORN_WS_OPTIONS
from wsmigrate.bridge.stages import STAGE_ORDER, Stage
from wsmigrate.metrics.exposition import MULTIPROCESS_ENV, prepare_multiprocess_dir

log = logging.getLogger("wsmigrate")



def _serve(args: argparse.Namespace) -> int:
    if not args.app:
        print("wsmigrate: which application? --app module:factory (or WSMIGRATE_APP), e.g. "
              "myapp.main:create_app", file=sys.stderr)
        return 2
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    overrides = {"bus_url": args.bus, "self_url": os.environ.get("WSMIGRATE_SELF_URL") or f"http://{host}:{args.port}",
                 "probe_token": os.environ.get("WSMIGRATE_PROBE_TOKEN") or secrets.token_urlsafe(24)}
    settings = Settings.from_env(**overrides)
    if args.workers > 1 and settings.bus_url.startswith("memory"):
        print(f"wsmigrate: {args.workers} workers cannot share the in-memory bus (each would see only its own "
              "events): give a Redis bus (--bus redis://127.0.0.1:6379/0) or run one worker", file=sys.stderr)
        return 2
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
    uvicorn.run(
        args.app,
        factory=True,
        app_dir=args.app_dir,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
        **UVICORN_WS_OPTIONS,  # type: ignore[arg-type]
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from wsmigrate.bridge.ops.simulate import load_scenario, render, simulate

    if not args.scenario:
        print("wsmigrate: which scenario? --scenario module:factory (or WSMIGRATE_SCENARIO), e.g. "
              "myapp.simulation:Scenario (each example ships one)", file=sys.stderr)
        return 2
    report = asyncio.run(simulate(args.url, load_scenario(args.scenario), legacy=args.legacy, unified=args.unified,
                                  duration=args.duration, seed=args.seed, token=args.token))
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


class HostUnreachableError(Exception):
    """A host of the deployment did not answer with its metrics."""


def _fetch_expositions(urls: str | list[str]) -> dict[str, str]:
    """Every host's `/metrics` (one URL per host; each covers its workers), by host URL."""
    texts: dict[str, str] = {}
    for url in [urls] if isinstance(urls, str) else urls:
        host = url.rstrip("/")
        try:
            response = httpx.get(host + "/metrics", timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise HostUnreachableError(f"host {host} did not answer with its metrics: {exc}") from None
        texts[host] = response.text
    return texts


def _report(args: argparse.Namespace) -> int:
    thresholds = Thresholds(args.min_compared, args.min_consistency)
    try:
        expositions = _fetch_expositions(args.url or ["http://127.0.0.1:8000"])
    except HostUnreachableError as exc:
        print(f"wsmigrate: {exc}", file=sys.stderr)
        return 2
    exposition = "\n".join(expositions.values())
    reports = build_fleet_report(expositions)
    if args.json:
        print(json.dumps({t: {"stage": r.stage, "published": r.published, "delivered": r.delivered,
                              "matches": r.matches, "missing": r.missing, "mismatches": r.mismatches,
                              "compared": r.compared, "consistency": r.consistency,
                              "host_stages": r.host_stages, "hosts_disagree": r.hosts_disagree,
                              "verdict": r.verdict(thresholds)[1]} for t, r in reports.items()}, indent=2))
    else:
        print(render_report(reports, thresholds))
        print(render_legacy_only(legacy_only_broadcasts(exposition)))
    return 0


def _promote(args: argparse.Namespace) -> int:
    thresholds = Thresholds(args.min_compared, args.min_consistency)
    try:
        reports = build_fleet_report(_fetch_expositions(args.url or ["http://127.0.0.1:8000"]))
    except HostUnreachableError as exc:
        print(f"wsmigrate: {exc}", file=sys.stderr)
        return 2
    report = reports.get(args.event_type)
    if report is None:
        print(f"wsmigrate: unknown event type {args.event_type!r}; the server declares: {', '.join(reports)}",
              file=sys.stderr)
        return 2
    current = Stage(report.stage)
    if current is Stage.COMPLETE:
        print(f"{args.event_type} is already complete")
        return 1
    target = STAGE_ORDER[STAGE_ORDER.index(current) + 1]
    safe, reason = report.verdict(thresholds)
    if not safe and not args.force:
        print(f"wsmigrate: refusing to promote {args.event_type} {current.value} -> {target.value}: {reason}",
              file=sys.stderr)
        return 1
    token = args.token or os.environ.get("WSMIGRATE_ADMIN_TOKEN", "")
    if not token:
        raise SystemExit("wsmigrate: an admin token is needed: --token or WSMIGRATE_ADMIN_TOKEN")
    for host in args.url or ["http://127.0.0.1:8000"]:
        admin = AdminClient(host, token)
        try:  # hosts sharing a flags store may already have the change: each is moved once
            if admin.flags()["types"][args.event_type]["stage"] != target.value:
                admin.set_stage(args.event_type, target.value, force=args.force)
        except (AdminError, httpx.HTTPError) as exc:
            print(f"wsmigrate: {host}: {exc}", file=sys.stderr)
            return 1
    print(f"{args.event_type}: {current.value} -> {target.value} ({reason})")
    return 0


def _add_thresholds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-compared", type=int, default=Thresholds.min_compared)
    parser.add_argument("--min-consistency", type=float, default=Thresholds.min_consistency, help="percent")


def _add_admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument("--token", default=None, help="admin token (default: $WSMIGRATE_ADMIN_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsmigrate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run an application with wsmigrate's uvicorn options")
    serve.add_argument("--app", default=os.environ.get("WSMIGRATE_APP"),
                       help="the app factory, module:function (default: $WSMIGRATE_APP)")
    serve.add_argument("--app-dir", default=".", help="directory put first on sys.path to import --app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start-up)")
    serve.add_argument("--bus", default=None, help="bus URL: memory:// (default) or redis://host:port/db")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_serve)

    sim = commands.add_parser("simulate", help="drive a mixed legacy/unified client population")
    sim.add_argument("--url", default="http://127.0.0.1:8000")
    sim.add_argument("--scenario", default=os.environ.get("WSMIGRATE_SCENARIO"),
                     help="the application's scenario, module:factory (default: $WSMIGRATE_SCENARIO)")
    sim.add_argument("--token", default=os.environ.get("WSMIGRATE_TOKEN"),
                     help="a user's token for REST and sockets when auth is on (default: $WSMIGRATE_TOKEN)")
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

    report = commands.add_parser("report", help="per-event-type parity table and promotion verdicts")
    report.add_argument("--url", action="append", help="a host's base URL; repeat for every host of a "
                        "deployment (default http://127.0.0.1:8000)")
    report.add_argument("--json", action="store_true")
    _add_thresholds(report)
    report.set_defaults(handler=_report)

    promote = commands.add_parser("promote", help="move a type to its next stage if the numbers allow it")
    promote.add_argument("event_type")
    promote.add_argument("--force", action="store_true", help="promote whatever the numbers say")
    promote.add_argument("--url", action="append", help="a host's base URL; repeat for every host of a deployment "
                         "(their numbers are judged together; each host not yet there is moved)")
    promote.add_argument("--token", help="admin token (default: $WSMIGRATE_ADMIN_TOKEN)")
    _add_thresholds(promote)
    promote.set_defaults(handler=_promote)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # operator commands print results, not requests
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
