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
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

DWELL_S = (0.05, 0.2)
OPEN_TIMEOUT_S = 10.0


class Scenario(Protocol):
    """An application's part of a simulation."""

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


async def _count_frames(ws: ClientConnection, stats: Population, idle: float, want: str | None = None) -> None:
    """Count frames until `want` arrives or nothing comes for `idle` seconds."""
    with contextlib.suppress(TimeoutError):
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), idle))
            kind = str(frame.get("type"))
            stats.frames[kind] += 1
            if kind == "error":
                stats.errors[str(frame.get("code") or frame.get("error"))] += 1
            if kind == "ping":
                await ws.send('{"type":"pong"}')
            if want is not None and kind == want:
                return


async def _legacy_user(ws_base: str, scenario: Scenario, stats: Population, deadline: float, rng: random.Random,
                       headers: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            async with connect(ws_base + scenario.legacy_view(rng), open_timeout=OPEN_TIMEOUT_S, max_size=None,
                               max_queue=None, additional_headers=headers) as ws:
                stats.sockets_opened += 1
                stats.navigations += 1
                await _count_frames(ws, stats, rng.uniform(*DWELL_S))
        except (WebSocketException, OSError, TimeoutError) as exc:
            stats.errors[type(exc).__name__] += 1


async def _unified_user(ws_base: str, path: str, scenario: Scenario, stats: Population, deadline: float,
                        rng: random.Random, headers: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()
    try:
        ws = await connect(ws_base + path, open_timeout=OPEN_TIMEOUT_S, max_queue=None, additional_headers=headers)
    except (WebSocketException, OSError) as exc:
        stats.errors[type(exc).__name__] += 1
        return
    stats.sockets_opened += 1
    current: str | None = None
    try:
        while loop.time() < deadline:
            view = scenario.unified_topic(rng)
            if current is not None and current != view:
                await ws.send(json.dumps({"type": "unsubscribe", "topics": [current]}))
                await _count_frames(ws, stats, 5.0, "unsubscribed")
            if current != view:
                await ws.send(json.dumps({"type": "subscribe", "topics": [view]}))
                await _count_frames(ws, stats, 5.0, "subscribed")
            current = view
            stats.navigations += 1
            await _count_frames(ws, stats, rng.uniform(*DWELL_S))
    except (ConnectionClosed, OSError) as exc:
        stats.errors[type(exc).__name__] += 1
    finally:
        await ws.close()


async def _traffic(http: httpx.AsyncClient, scenario: Scenario, deadline: float, rng: random.Random,
                   errors: Counter[str]) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            await scenario.act(http, rng)
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
        await asyncio.sleep(rng.uniform(0.01, 0.05))


async def simulate(url: str, scenario: Scenario, *, legacy: int, unified: int, duration: float, seed: int = 7,
                   token: str | None = None, unified_path: str = "/api/ws") -> dict[str, Any]:
    """Run the simulation and return the report (also what `--json` prints)."""
    rng = random.Random(seed)
    ws_base = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    legacy_stats, unified_stats = Population("legacy", clients=legacy), Population("unified", clients=unified)
    traffic_errors: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as http:
        await scenario.setup(http)
        try:
            deadline = asyncio.get_running_loop().time() + duration
            tasks = [_legacy_user(ws_base, scenario, legacy_stats, deadline, random.Random(rng.random()), headers)
                     for _ in range(legacy)]
            tasks += [_unified_user(ws_base, unified_path, scenario, unified_stats, deadline,
                                    random.Random(rng.random()), headers) for _ in range(unified)]
            tasks.append(_traffic(http, scenario, deadline, rng, traffic_errors))
            await asyncio.gather(*tasks)
        finally:
            await scenario.cleanup(http)
    return {"legacy": legacy_stats.as_dict(), "unified": unified_stats.as_dict(),
            "traffic_errors": dict(traffic_errors)}


def render(report: dict[str, Any]) -> str:
    lines = [f"{'population':<10} {'clients':>7} {'navigations':>11} {'sockets':>8} {'sockets/nav':>11}  errors"]
    for kind in ("legacy", "unified"):
        row = report[kind]
        errors = sum(row["errors"].values())
        lines.append(f"{kind:<10} {row['clients']:>7} {row['navigations']:>11} {row['sockets_opened']:>8} "
                     f"{row['sockets_per_navigation']:>11.3f}  {errors}")
    for kind in ("legacy", "unified"):
        frames = ", ".join(f"{k}={v}" for k, v in report[kind]["frames"].items()) or "none"
        lines.append(f"{kind} frames: {frames}")
    return "\n".join(lines)
