"""`wsmigrate simulate`: a mixed population of legacy and unified clients against a running server.

Legacy clients behave like the old frontend (a new socket per view, hopping between an agent's
dashboard and a chat); unified clients keep one socket and switch subscriptions. Meanwhile a
traffic generator creates agents, messages and runs over REST. The report shows the churn the
refactor removes: sockets opened per navigation is 1 for legacy clients and 0 for unified ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from wsmigrate.legacy.client import LegacyClient

DWELL_S = (0.05, 0.2)


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


@dataclass
class World:
    agents: list[int]
    threads: list[int]


async def _setup(http: httpx.AsyncClient, agents: int, threads_per_agent: int) -> World:
    world = World([], [])
    for index in range(agents):
        agent = (await http.post("/api/agents", json={"name": f"sim-agent-{index}"})).raise_for_status().json()
        world.agents.append(agent["id"])
        for number in range(threads_per_agent):
            thread = (await http.post("/api/threads", json={"agent_id": agent["id"], "title": f"sim {number}"})
                      ).raise_for_status().json()
            world.threads.append(thread["id"])
    return world


async def _legacy_user(ws_base: str, world: World, stats: Population, deadline: float, rng: random.Random) -> None:
    client = LegacyClient(ws_base)
    loop = asyncio.get_running_loop()
    try:
        while loop.time() < deadline:
            try:
                if rng.random() < 0.5:
                    await client.open_agent(rng.choice(world.agents))
                else:
                    await client.open_thread(rng.choice(world.threads))
                await client.drain(rng.uniform(*DWELL_S))
            except (WebSocketException, OSError, TimeoutError) as exc:
                stats.errors[type(exc).__name__] += 1
    finally:
        stats.navigations += client.navigations
        stats.sockets_opened += client.sockets_opened
        stats.frames.update(client.counts)
        await client.close()


async def _recv_until(ws: ClientConnection, stats: Population, idle: float, want: str | None = None) -> None:
    """Count frames until `want` arrives or nothing comes for `idle` seconds."""
    with contextlib.suppress(TimeoutError):
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), idle))
            kind = str(frame.get("type"))
            stats.frames[kind] += 1
            if kind == "error":
                stats.errors[str(frame.get("code"))] += 1
            if want is not None and kind == want:
                return


async def _unified_user(ws_base: str, world: World, stats: Population, deadline: float, rng: random.Random) -> None:
    loop = asyncio.get_running_loop()
    try:
        ws = await connect(f"{ws_base}/api/ws", open_timeout=10, max_queue=None)
    except (WebSocketException, OSError) as exc:
        stats.errors[type(exc).__name__] += 1
        return
    stats.sockets_opened += 1
    current: str | None = None
    try:
        while loop.time() < deadline:
            view = "agents" if rng.random() < 0.5 else f"thread:{rng.choice(world.threads)}"
            if current is not None and current != view:
                await ws.send(json.dumps({"type": "unsubscribe", "topics": [current]}))
                await _recv_until(ws, stats, 5.0, "unsubscribed")
            if current != view:
                await ws.send(json.dumps({"type": "subscribe", "topics": [view]}))
                await _recv_until(ws, stats, 5.0, "subscribed")
            current = view
            stats.navigations += 1
            await _recv_until(ws, stats, rng.uniform(*DWELL_S))
    except (ConnectionClosed, OSError) as exc:
        stats.errors[type(exc).__name__] += 1
    finally:
        await ws.close()


async def _traffic(http: httpx.AsyncClient, world: World, deadline: float, rng: random.Random,
                   errors: Counter[str]) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        roll = rng.random()
        try:
            if roll < 0.6:
                await http.post(f"/api/threads/{rng.choice(world.threads)}/messages", json={"content": "sim"})
            elif roll < 0.9:
                status = rng.choice(["idle", "running"])
                await http.patch(f"/api/agents/{rng.choice(world.agents)}", json={"status": status})
            else:
                await http.post(f"/api/threads/{rng.choice(world.threads)}/run", json={"chunks": 20, "delay_ms": 5})
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
        await asyncio.sleep(rng.uniform(0.01, 0.05))


async def simulate(url: str, *, legacy: int, unified: int, duration: float, seed: int = 7) -> dict[str, Any]:
    """Run the simulation and return the report (also what `--json` prints)."""
    rng = random.Random(seed)
    ws_base = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
    legacy_stats, unified_stats = Population("legacy", clients=legacy), Population("unified", clients=unified)
    traffic_errors: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        world = await _setup(http, agents=3, threads_per_agent=2)
        deadline = asyncio.get_running_loop().time() + duration
        tasks = [_legacy_user(ws_base, world, legacy_stats, deadline, random.Random(rng.random()))
                 for _ in range(legacy)]
        tasks += [_unified_user(ws_base, world, unified_stats, deadline, random.Random(rng.random()))
                  for _ in range(unified)]
        tasks.append(_traffic(http, world, deadline, rng, traffic_errors))
        await asyncio.gather(*tasks)
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
