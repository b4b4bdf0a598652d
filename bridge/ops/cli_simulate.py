"""`wsmigrate simulate`: the simulation (`wsmigrate.bridge.ops.simulate`) at a terminal.

What this adds to a run: a progress bar on a terminal (`rich`), a plain line every few seconds
when stderr is not one; Ctrl-C ends the run after the clients' current step and prints the
partial report (exit 130) after removing what the scenario created (unless `--keep`); and a goal,
`--until-promotable TYPE`: run until the server's numbers make TYPE promotable (or
`--max-duration` passes), and with `--promote` move it stage by stage to `complete`, so an
operator can watch the whole path on a laptop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from wsmigrate.bridge.ops.admin_client import AdminClient, AdminError
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
    emit,
    unreachable,
)
from wsmigrate.bridge.ops.report import Thresholds, build_fleet_report
from wsmigrate.bridge.ops.simulate import Simulation, SimulationError, load_scenario, render
from wsmigrate.bridge.stages import STAGE_ORDER, Stage

TOKEN_ENV = "WSMIGRATE_TOKEN"
PROGRESS_EVERY_S = 0.25
LINE_EVERY_S = 5.0
GOAL_EVERY_S = 2.0

AddOptions = Callable[..., None]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], add_connection_options: AddOptions,
               add_thresholds: AddOptions) -> None:
    sim = commands.add_parser("simulate", help="drive a mixed legacy/unified client population",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sim.add_argument("--scenario", default=os.environ.get("WSMIGRATE_SCENARIO"), metavar="MODULE:FACTORY",
                     help="the application's scenario (default: $WSMIGRATE_SCENARIO), e.g. "
                          "myapp.simulation:Scenario")
    add_connection_options(sim, token_alias=False)
    sim.add_argument("--token", default=None, metavar="TOKEN",
                     help=f"a user's token for REST and sockets when auth is on (default: ${TOKEN_ENV}, else the "
                          "scenario's own sign-in, e.g. the demo user of `make run`)")
    sim.add_argument("--legacy", type=int, default=10, metavar="N",
                     help="legacy clients, a socket per view (default 10)")
    sim.add_argument("--unified", type=int, default=10, metavar="N",
                     help="unified clients, one socket each (default 10)")
    sim.add_argument("--duration", type=float, default=10.0, metavar="SECONDS",
                     help="how long to run (default 10; ignored with --until-promotable)")
    sim.add_argument("--until-promotable", metavar="TYPE", default=None,
                     help="run until the server's numbers make TYPE promotable, or --max-duration passes")
    sim.add_argument("--promote", action="store_true",
                     help="with --until-promotable: promote TYPE each time it is promotable, until complete "
                          "(needs the admin token)")
    sim.add_argument("--max-duration", type=float, default=600.0, metavar="SECONDS",
                     help="the time limit of --until-promotable (default 600)")
    sim.add_argument("--keep", action="store_true", help="keep what the scenario created (default: removed at the end)")
    sim.add_argument("--seed", type=int, default=7, help="random seed of the clients' navigation (default 7)")
    sim.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto",
                     help="a progress bar (on a terminal: auto), a line every 5 s, or nothing; always on stderr")
    add_thresholds(sim)
    sim.set_defaults(handler=simulate_command)


@dataclass
class Goal:
    """Where `--until-promotable` stands: the type's stage, its verdict, the promotions made."""

    event_type: str
    promote: bool
    stage: str = "?"
    compared: float = 0.0
    promotable: bool = False
    reason: str = "not measured yet"
    promotions: list[str] = field(default_factory=list)
    reached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"event_type": self.event_type, "stage": self.stage, "compared": self.compared,
                "promotable": self.promotable, "reason": self.reason, "promotions": self.promotions,
                "reached": self.reached}

    def line(self) -> str:
        return f"{self.event_type}: {self.stage}, {self.compared:.0f} compared, {self.reason}"


def errors_of(sim: Simulation) -> int:
    return sum(sim.legacy.errors.values()) + sum(sim.unified.errors.values()) + sum(sim.traffic_errors.values())


def compact(sim: Simulation, goal: Goal | None) -> str:
    """The progress bar's few words (a terminal line is short)."""
    legacy, unified, errors = sim.legacy, sim.unified, errors_of(sim)
    text = f"{legacy.navigations + unified.navigations} views, {sim.actions} actions, {errors} errors"
    return f"{text} · {goal.event_type} {goal.stage} {goal.compared:.0f} compared" if goal is not None else text


def summary(sim: Simulation, goal: Goal | None) -> str:
    legacy, unified, errors = sim.legacy, sim.unified, errors_of(sim)
    frames = sum(legacy.frames.values()) + sum(unified.frames.values())
    text = (f"{legacy.navigations} legacy / {unified.navigations} unified navigations, {frames} frames, "
            f"{sim.actions} actions, {errors} errors")
    return f"{text}; {goal.line()}" if goal is not None else text


async def show_progress(sim: Simulation, goal: Goal | None, mode: str, total: float, done: asyncio.Event) -> None:
    if mode == "none":
        await done.wait()
        return
    if mode == "bar":
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("simulate"), BarColumn(bar_width=20), TimeElapsedColumn(),
                   TextColumn("{task.fields[stats]}"))
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("simulate", total=total, stats="")
            while not done.is_set():
                progress.update(task, completed=min(sim.elapsed, total), stats=compact(sim, goal))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), PROGRESS_EVERY_S)
        return
    started, ended = asyncio.create_task(sim.running.wait()), asyncio.create_task(done.wait())
    await asyncio.wait({started, ended}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    ended.cancel()
    if not sim.running.is_set():
        return  # the run ended before it started (its setup failed): nothing to show
    print(f"simulate: running {sim.legacy.clients} legacy and {sim.unified.clients} unified clients against "
          f"{sim.url}", file=sys.stderr, flush=True)
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), LINE_EVERY_S)
        print(f"simulate: {sim.elapsed:.0f} s, {summary(sim, goal)}", file=sys.stderr, flush=True)


async def pursue(sim: Simulation, goal: Goal, url: str, thresholds: Thresholds, admin: AdminClient | None) -> None:
    """Judge the goal's type every few seconds from the server's metrics; promote or stop."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        first = True
        while True:
            if not first:
                await asyncio.sleep(GOAL_EVERY_S)  # the judging period: the numbers change continuously
            first = False
            try:
                text = (await http.get("/metrics")).text
            except httpx.HTTPError:
                continue  # the server may be busy or restarting; the progress line shows the last verdict
            reports = build_fleet_report({url: text})
            report = reports.get(goal.event_type)
            if report is None:
                raise CommandError(f"unknown event type {goal.event_type!r}; the server declares: "
                                   f"{', '.join(reports)}", EXIT_USAGE)
            goal.stage, goal.compared = report.stage, report.compared
            goal.promotable, goal.reason = report.verdict(thresholds)
            if report.stage == Stage.COMPLETE.value:
                goal.reached = True
                sim.stop("goal")
                return
            if not goal.promotable:
                continue
            if admin is None:
                goal.reached = True
                sim.stop("goal")
                return
            target = STAGE_ORDER[STAGE_ORDER.index(Stage(report.stage)) + 1].value
            try:
                await asyncio.to_thread(admin.set_stage, goal.event_type, target)
            except AdminError as exc:
                raise CommandError(str(exc)) from None
            goal.promotions.append(f"{report.stage} -> {target}")


async def run(args: argparse.Namespace, url: str) -> tuple[dict[str, Any], Goal | None]:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    goal = Goal(args.until_promotable, args.promote) if args.until_promotable else None
    admin = None
    if goal is not None and goal.promote:
        admin_token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV, "")
        if not admin_token:
            raise CommandError(f"--promote needs the admin token: --admin-token or {ADMIN_TOKEN_ENV}", EXIT_USAGE)
        admin = AdminClient(url, admin_token, actor="simulate")
    total = args.max_duration if goal is not None else args.duration
    sim = Simulation(url, load_scenario(args.scenario), legacy=args.legacy, unified=args.unified, duration=total,
                     seed=args.seed, token=token, keep=args.keep)
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        sim.stop("interrupt")
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C ends at once

    loop.add_signal_handler(signal.SIGINT, interrupted)
    mode = args.progress if args.progress != "auto" else ("bar" if sys.stderr.isatty() else "lines")
    done = asyncio.Event()
    helpers = [asyncio.create_task(show_progress(sim, goal, mode, total, done))]
    if goal is not None:
        helpers.append(asyncio.create_task(pursue(sim, goal, url, Thresholds(args.min_compared,
                                                                             args.min_consistency), admin)))
    try:
        simulation = asyncio.create_task(sim.run())
        finished, _ = await asyncio.wait([simulation, *helpers[1:]], return_when=asyncio.FIRST_COMPLETED)
        failure = next((t.exception() for t in finished if t is not simulation and t.exception()), None)
        if failure is not None:
            sim.stop("error")  # the goal's judge failed: stop cleanly, then say why
        report = await simulation
        if failure is not None:
            raise failure
    finally:
        done.set()
        for task in helpers[1:]:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        with contextlib.suppress(ValueError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    return report, goal


def simulate_command(args: argparse.Namespace) -> int:
    if not args.scenario:
        raise CommandError("which scenario? --scenario module:factory (or WSMIGRATE_SCENARIO), e.g. "
                           "myapp.simulation:Scenario (each example ships one)", EXIT_USAGE)
    if args.promote and not args.until_promotable:
        raise CommandError("--promote goes with --until-promotable TYPE", EXIT_USAGE)
    url = base_url(args.url or os.environ.get(URL_ENV) or DEFAULT_URL)
    try:
        report, goal = asyncio.run(run(args, url))
    except SimulationError as exc:
        raise CommandError(str(exc)) from None
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    text = render(report)
    if goal is not None:
        report["goal"] = goal.as_dict()
        text += "\n" + goal.line() + "".join(f"\npromoted {step}" for step in goal.promotions)
    emit(report, as_json=args.json, text=text)
    if report["interrupted"]:
        return EXIT_INTERRUPTED
    if goal is not None and not goal.reached:
        return EXIT_FAILED
    return EXIT_OK
