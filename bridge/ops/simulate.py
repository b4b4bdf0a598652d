"""`wsmigrate simulate`: a mixed population of legacy and unified clients against a running server.

Legacy clients behave like an old frontend (a new socket for every view they navigate to);
unified clients keep one socket and switch subscriptions. Meanwhile the scenario generates the
application's own traffic over REST. The report shows the churn the refactor removes: sockets
opened per navigation is 1 for legacy clients and 0 for unified ones.

What the views, topics and traffic are is the application's: a `Scenario` (the examples ship
theirs, in `examples/<app>/simulation.py`), named with `--scenario module:factory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

DWELL_S = (0.05, 0.2)
OPEN_TIMEOUT_S = 10.0


class Scenario(Protocol):
    """An application's part of a simulation.

    A scenario may also define `async def login(self, http) -> str | None`: a user token for a
    server with auth on, when the operator gave none (the examples' ask a development
    server for its demo user's token)."""

    async def setup(self, http: httpx.AsyncClient) -> None:
        """Create what the clients will look at (resources, over REST)."""

    def legacy_view(self, rng: random.Random) -> str:
        """The path and query of a legacy view to open next (`/ws/board/6f1c…`, `/api/ws?order_id=4`)."""

    def unified_topic(self, rng: random.Random) -> str:
        """The topic a unified client's next view follows."""

    async def act(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        """One step of the application's traffic (a REST call that publishes an event)."""

    async def cleanup(self, http: httpx.AsyncClient) -> None:
        """Remove what `setup` created."""


def load_scenario(spec: str) -> Scenario:
    """`module:factory` (the current directory is importable, as for `wsmigrate serve --app`)."""
    module_name, _, attribute = spec.partition(":")
    if "" not in sys.path:
        sys.path.insert(0, "")
    factory = getattr(importlib.import_module(module_name), attribute or "Scenario")
    scenario: Scenario = factory()
    return scenario


@dataclass
class Population:
    kind: str
    clients: int = 0
    navigations: int = 0
    sockets_opened: int = 0
    frames: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def sockets_per_navigation(self) -> float:
        if self.kind == "unified":  # one socket per client is opened at start-up, before any view
            return (self.sockets_opened - self.clients) / max(self.navigations, 1)
        return self.sockets_opened / max(self.navigations, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients, "navigations": self.navigations, "sockets_opened": self.sockets_opened,
            "sockets_per_navigation": round(self.sockets_per_navigation, 3),
            "frames": dict(sorted(self.frames.items())), "errors": dict(sorted(self.errors.items())),
        }


async def _count_frames(ws: ClientConnection, stats: Population, idle: float, want: str | None = None, *,
                        stop: asyncio.Event | None = None) -> None:
    """Count frames until `want` arrives, nothing comes for `idle` seconds, or `stop` is set."""
    with contextlib.suppress(TimeoutError):
        while stop is None or not stop.is_set():
            frame = json.loads(await asyncio.wait_for(ws.recv(), idle))
            kind = str(frame.get("type"))
            stats.frames[kind] += 1
            if kind == "error":
                stats.errors[str(frame.get("code") or frame.get("error"))] += 1
            if kind == "ping":
                await ws.send('{"type":"pong"}')
            if want is not None and kind == want:
                return


class SimulationError(Exception):
    """The simulation cannot run against this server (one line for the operator)."""


class Simulation:
    """One run: the populations, the application's traffic, and a stop that any caller may pull.

    `stop()` (Ctrl-C, a reached goal) ends every client after its current step; the report is
    then the partial one, marked `interrupted` when it was not the duration that ended it."""

    def __init__(self, url: str, scenario: Scenario, *, legacy: int, unified: int, duration: float | None,
                 seed: int = 7, token: str | None = None, unified_path: str = "/api/ws", keep: bool = False) -> None:
        self.url = url.rstrip("/")
        self.scenario = scenario
        self.duration = duration
        self.seed = seed
        self.token = token
        self.unified_path = unified_path
        self.keep = keep
        self.legacy = Population("legacy", clients=legacy)
        self.unified = Population("unified", clients=unified)
        self.traffic_errors: Counter[str] = Counter()
        self.actions = 0
        self.started = 0.0
        self.stopped_by: str | None = None
        self._stop = asyncio.Event()
        self.running = asyncio.Event()  # set once the scenario's setup is done and the clients start

    def stop(self, why: str) -> None:
        if self.stopped_by is None:
            self.stopped_by = why
        self._stop.set()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    def _running(self) -> bool:
        if self._stop.is_set():
            return False
        if self.duration is not None and self.elapsed >= self.duration:
            self.stop("duration")
            return False
        return True

    async def _pause(self, seconds: float) -> None:
        """Dwell on a view, or wait between actions; cut short by `stop`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _login(self, http: httpx.AsyncClient) -> None:
        login = getattr(self.scenario, "login", None)
        if self.token is None and login is not None:
            self.token = await login(http)
        if self.token:
            http.headers["Authorization"] = f"Bearer {self.token}"

    async def run(self) -> dict[str, Any]:
        rng = random.Random(self.seed)
        ws_base = self.url.replace("http://", "ws://").replace("https://", "wss://")
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            await self._login(http)
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            try:
                await self.scenario.setup(http)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 401:
                    raise SimulationError(f"{self.url} requires a user token: --token or WSMIGRATE_TOKEN "
                                          "(make run keeps one in var/demo-token)") from None
                raise SimulationError(f"{self.url} refused the scenario's setup: {exc.response.status_code} "
                                      f"{exc.response.text[:200]}") from None
            self.started = time.monotonic()
            self.running.set()
            try:
                tasks = [self._legacy_user(ws_base, random.Random(rng.random()), headers)
                         for _ in range(self.legacy.clients)]
                tasks += [self._unified_user(ws_base, random.Random(rng.random()), headers)
                          for _ in range(self.unified.clients)]
                tasks.append(self._traffic(http, rng))
                await asyncio.gather(*tasks)
            finally:
                if not self.keep:
                    await self.scenario.cleanup(http)
        return self.report()

    def report(self) -> dict[str, Any]:
        return {"legacy": self.legacy.as_dict(), "unified": self.unified.as_dict(),
                "traffic_errors": dict(self.traffic_errors), "actions": self.actions,
                "duration_s": round(self.elapsed, 2), "interrupted": self.stopped_by not in (None, "duration", "goal"),
                "stopped_by": self.stopped_by, "kept": self.keep}

    async def _legacy_user(self, ws_base: str, rng: random.Random, headers: dict[str, str]) -> None:
        stats = self.legacy
        while self._running():
            try:
                async with connect(ws_base + self.scenario.legacy_view(rng), open_timeout=OPEN_TIMEOUT_S,
                                   max_size=None, max_queue=None, additional_headers=headers) as ws:
                    stats.sockets_opened += 1
                    stats.navigations += 1
                    await _count_frames(ws, stats, rng.uniform(*DWELL_S), stop=self._stop)
            except (WebSocketException, OSError, TimeoutError) as exc:
                stats.errors[type(exc).__name__] += 1
                await self._pause(rng.uniform(*DWELL_S))

    async def _unified_user(self, ws_base: str, rng: random.Random, headers: dict[str, str]) -> None:
        stats = self.unified
        try:
            ws = await connect(ws_base + self.unified_path, open_timeout=OPEN_TIMEOUT_S, max_queue=None,
                               additional_headers=headers)
        except (WebSocketException, OSError, TimeoutError) as exc:
            stats.errors[type(exc).__name__] += 1
            return
        stats.sockets_opened += 1
        current: str | None = None
        try:
            while self._running():
                view = self.scenario.unified_topic(rng)
                if current is not None and current != view:
                    await ws.send(json.dumps({"type": "unsubscribe", "topics": [current]}))
                    await _count_frames(ws, stats, 5.0, "unsubscribed")
                if current != view:
                    await ws.send(json.dumps({"type": "subscribe", "topics": [view]}))
                    await _count_frames(ws, stats, 5.0, "subscribed")
                current = view
                stats.navigations += 1
                await _count_frames(ws, stats, rng.uniform(*DWELL_S), stop=self._stop)
        except (ConnectionClosed, OSError) as exc:
            stats.errors[type(exc).__name__] += 1
        finally:
            await ws.close()

    async def _traffic(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        while self._running():
            try:
                await self.scenario.act(http, rng)
                self.actions += 1
            except httpx.HTTPError as exc:
                self.traffic_errors[type(exc).__name__] += 1
            await self._pause(rng.uniform(0.01, 0.05))


async def simulate(url: str, scenario: Scenario, *, legacy: int, unified: int, duration: float, seed: int = 7,
                   token: str | None = None, unified_path: str = "/api/ws", keep: bool = False) -> dict[str, Any]:
    """Run a simulation for `duration` seconds and return its report (also what `--json` prints)."""
    return await Simulation(url, scenario, legacy=legacy, unified=unified, duration=duration, seed=seed,
                            token=token, unified_path=unified_path, keep=keep).run()


def render(report: dict[str, Any]) -> str:
    ended = "interrupted: a partial report" if report.get("interrupted") else f"stopped by {report.get('stopped_by')}"
    lines = [f"{report.get('duration_s', 0):.1f} s, {report.get('actions', 0)} application actions ({ended})",
             f"{'population':<10} {'clients':>7} {'navigations':>11} {'sockets':>8} {'sockets/nav':>11}  errors"]
    for kind in ("legacy", "unified"):
        row = report[kind]
        errors = sum(row["errors"].values())
        lines.append(f"{kind:<10} {row['clients']:>7} {row['navigations']:>11} {row['sockets_opened']:>8} "
                     f"{row['sockets_per_navigation']:>11.3f}  {errors}")
    for kind in ("legacy", "unified"):
        frames = ", ".join(f"{k}={v}" for k, v in report[kind]["frames"].items()) or "none"
        lines.append(f"{kind} frames: {frames}")
    return "\n".join(lines)
