"""The `wsmigrate` command line: `serve` an application, and the operator commands (`flags`,
`report`, `promote`, `simulate`), which talk to a running server over HTTP.

Every operator command takes `--url` (default `$WSMIGRATE_URL`, else http://127.0.0.1:8000),
`--admin-token` (default `$WSMIGRATE_ADMIN_TOKEN`) and `--json`; how each ends (exit codes, one
line or JSON, a closed pipe) is `wsmigrate.bridge.ops.cli_output`'s.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import httpx

from wsmigrate.bridge.ops import cli_serve, cli_simulate
from wsmigrate.bridge.ops.admin_client import AdminClient, AdminError, render_flags
from wsmigrate.bridge.ops.cli_output import (
    ADMIN_TOKEN_ENV,
    DEFAULT_URL,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    URL_ENV,
    CommandError,
    base_url,
    discard_stdout,
    emit,
    fail,
    unreachable,
)
from wsmigrate.bridge.ops.report import (
    Thresholds,
    TypeReport,
    build_fleet_report,
    legacy_only_broadcasts,
    render_legacy_only,
)
from wsmigrate.bridge.ops.report import render as render_report
from wsmigrate.bridge.stages import STAGE_ORDER, Stage

try:
    __version__ = metadata.version("wsmigrate")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

log = logging.getLogger("wsmigrate")


# -- options shared by the operator commands ---------------------------------------------------------


def default_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_URL


def add_connection_options(parser: argparse.ArgumentParser, *, several_hosts: bool = False,
                           token_alias: bool = True) -> None:
    if several_hosts:
        parser.add_argument("--url", action="append", metavar="URL",
                            help=f"a host's base URL; repeat for every host of a deployment (default: ${URL_ENV}, "
                                 f"else {DEFAULT_URL})")
    else:
        parser.add_argument("--url", metavar="URL",
                            help=f"the server's base URL (default: ${URL_ENV}, else {DEFAULT_URL})")
    names = ["--admin-token", "--token"] if token_alias else ["--admin-token"]
    parser.add_argument(*names, dest="admin_token", metavar="TOKEN",
                        help=f"the admin API's bearer token (default: ${ADMIN_TOKEN_ENV})")
    parser.add_argument("--json", action="store_true", help="print JSON (for every outcome, refusals included)")


def add_thresholds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-compared", type=int, default=Thresholds.min_compared, metavar="N",
                        help=f"compared deliveries needed before a promotion (default {Thresholds.min_compared})")
    parser.add_argument("--min-consistency", type=float, default=Thresholds.min_consistency, metavar="PERCENT",
                        help=f"matching share of the compared deliveries needed (default {Thresholds.min_consistency})")


def urls_of(args: argparse.Namespace) -> list[str]:
    raw = args.url if isinstance(args.url, list) else [args.url] if args.url else []
    return [base_url(url) for url in raw or [default_url()]]


def admin_token(args: argparse.Namespace) -> str:
    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV, "")
    if not token:
        raise CommandError(f"an admin token is needed: --admin-token or {ADMIN_TOKEN_ENV} "
                           "(make run keeps one in var/admin-token)", EXIT_USAGE)
    return str(token)


def thresholds_of(args: argparse.Namespace) -> Thresholds:
    return Thresholds(args.min_compared, args.min_consistency)


def admin_failure(exc: AdminError) -> CommandError:
    """The admin API's no, as a command error: an unknown type or stage is a usage error."""
    return CommandError(str(exc), EXIT_USAGE if exc.status_code in (404, 422) else EXIT_FAILED)


# -- flags -------------------------------------------------------------------------------------------


def flags_command(args: argparse.Namespace) -> int:
    [url] = urls_of(args)
    client = AdminClient(url, admin_token(args))
    try:
        if args.action == "show":
            view = client.flags()
        elif args.action == "set":
            view = client.set_stage(args.event_type, args.stage, force=args.force)
        else:
            view = client.kill(args.action == "kill")
    except AdminError as exc:
        raise admin_failure(exc) from None
    emit(view, as_json=args.json, text=render_flags(view))
    return EXIT_OK


# -- report and promote ------------------------------------------------------------------------------


def fetch_expositions(urls: list[str], token: str | None = None) -> dict[str, str]:
    """Every host's `/metrics` (one URL per host; each covers its workers), by host URL."""
    texts: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for host in urls:
        try:
            response = httpx.get(host + "/metrics", timeout=10, headers=headers)
        except httpx.HTTPError as exc:
            raise unreachable(host, exc) from None
        if response.status_code != 200 or "wsmigrate_" not in response.text:
            raise CommandError(f"{host} did not answer with wsmigrate's metrics ({response.status_code} at /metrics)")
        texts[host] = response.text
    return texts


def report_json(report: TypeReport, thresholds: Thresholds) -> dict[str, Any]:
    safe, reason = report.verdict(thresholds)
    return {"stage": report.stage, "published": report.published, "delivered": report.delivered,
            "matches": report.matches, "missing": report.missing, "mismatches": report.mismatches,
            "compared": report.compared, "consistency": report.consistency, "host_stages": report.host_stages,
            "hosts_disagree": report.hosts_disagree, "promotable": safe, "verdict": reason}


def report_command(args: argparse.Namespace) -> int:
    thresholds = thresholds_of(args)
    expositions = fetch_expositions(urls_of(args), args.admin_token or os.environ.get(ADMIN_TOKEN_ENV))
    reports = build_fleet_report(expositions)
    if args.json:
        emit({t: report_json(r, thresholds) for t, r in reports.items()}, as_json=True, text="")
    else:
        blocking = render_legacy_only(legacy_only_broadcasts("\n".join(expositions.values())))
        emit(None, as_json=False, text=render_report(reports, thresholds) + "\n" + blocking)
    return EXIT_OK


def promote_command(args: argparse.Namespace) -> int:
    urls = urls_of(args)
    reports = build_fleet_report(fetch_expositions(urls))
    report = reports.get(args.event_type)
    if report is None:
        raise CommandError(f"unknown event type {args.event_type!r}; the server declares: {', '.join(reports)}",
                           EXIT_USAGE, event_type=args.event_type, declared=list(reports))
    current = Stage(report.stage)
    outcome: dict[str, Any] = {"event_type": args.event_type, "from": current.value}
    if current is Stage.COMPLETE:
        raise CommandError(f"{args.event_type} is already complete", EXIT_FAILED, promoted=False, **outcome)
    target = STAGE_ORDER[STAGE_ORDER.index(current) + 1]
    outcome["to"] = target.value
    safe, reason = report.verdict(thresholds_of(args))
    if not safe and not args.force:
        raise CommandError(f"refusing to promote {args.event_type} {current.value} -> {target.value}: {reason}",
                           EXIT_FAILED, promoted=False, reason=reason, **outcome)
    token = admin_token(args)
    store = _store_of(AdminClient(urls[0], token))
    if not store.get("writable", True):  # the team's flag system is the source of truth: say what to set
        flag = str(store["stage_flag"]).replace("{event_type}", args.event_type)
        change = {"flag": flag, "value": target.value, "provider": store.get("provider")}
        emit({"ok": True, "promoted": False, "reason": reason, "change": change, **outcome}, as_json=args.json,
             text=f"{args.event_type}: {current.value} -> {target.value} is safe ({reason}); the flags come from "
                  f"the OpenFeature provider {store.get('provider')!r}: set {flag} to {target.value!r} there")
        return EXIT_OK
    moved = []
    for host in urls:
        admin = AdminClient(host, token)
        try:  # hosts sharing a flags store may already have the change: each is moved once
            if admin.flags()["types"][args.event_type]["stage"] != target.value:
                admin.set_stage(args.event_type, target.value, force=args.force)
                moved.append(host)
        except AdminError as exc:
            raise CommandError(str(exc), EXIT_FAILED, promoted=bool(moved), moved=moved, **outcome) from None
    emit({"ok": True, "promoted": True, "reason": reason, "moved": moved, **outcome}, as_json=args.json,
         text=f"{args.event_type}: {current.value} -> {target.value} ({reason})")
    return EXIT_OK


def _store_of(admin: AdminClient) -> dict[str, Any]:
    try:
        return dict(admin.flags().get("store") or {})
    except AdminError as exc:
        raise CommandError(str(exc)) from None


# -- the parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsmigrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wsmigrate {__version__}",
                        help="print wsmigrate's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_serve.add_parser(commands)
    cli_simulate.add_parser(commands, add_connection_options, add_thresholds)

    flags = commands.add_parser("flags", help="show or change rollout flags through the admin API")
    flag_actions = flags.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("show", "print every event type's stage"), ("kill", "force every type to off"),
                       ("unkill", "release the kill switch")):
        add_connection_options(flag_actions.add_parser(name, help=text, description=text))
    set_parser = flag_actions.add_parser("set", help="move one event type to a stage",
                                         description="move one event type to a stage")
    set_parser.add_argument("event_type", help="a declared event type")
    set_parser.add_argument("stage", choices=[s.value for s in Stage], help="the stage to move it to")
    set_parser.add_argument("--force", action="store_true", help="allow skipping stages forward")
    add_connection_options(set_parser)
    flags.set_defaults(handler=flags_command)

    report = commands.add_parser("report", help="per-event-type parity table and promotion verdicts")
    add_connection_options(report, several_hosts=True)
    add_thresholds(report)
    report.set_defaults(handler=report_command)

    promote = commands.add_parser("promote", help="move a type to its next stage if the numbers allow it")
    promote.add_argument("event_type", help="a declared event type")
    promote.add_argument("--force", action="store_true", help="promote whatever the numbers say")
    add_connection_options(promote, several_hosts=True)
    add_thresholds(promote)
    promote.set_defaults(handler=promote_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)  # a usage error: argparse's message, exit 2
    if args.command == "serve":
        logging.getLogger().setLevel(logging.INFO)
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.handler(args))
    except CommandError as exc:
        return fail(exc, as_json=as_json)
    except AdminError as exc:
        return fail(admin_failure(exc), as_json=as_json)
    except KeyboardInterrupt:
        return fail(CommandError("interrupted", EXIT_INTERRUPTED), as_json=as_json)
    except BrokenPipeError:  # the reader went away (`| head -1`): the rest is nobody's
        discard_stdout()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

