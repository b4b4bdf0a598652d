"""Synthetic probes: close the loop at the client edge, on both paths, all the time.

The server keeps one loopback legacy client (a real socket on `/api/ws?thread_id=<probe thread>`)
and one unified client (a real socket subscribed to `thread:<probe thread>`). Every few seconds it
publishes a probe event through the same ingress as real events (a `stream_chunk` on the probe
thread, `origin="probe"`), so stage rules apply to it like to any chunk. Each client reports when
the probe arrives: `probe_roundtrip_seconds{path}`; a probe that has not arrived within the window
counts in `probe_missing_total{path}` and turns `/healthz` degraded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from wsmigrate.bridge.chat_events import ChatEvent
from wsmigrate.bridge.db import Agent, Database, Thread
from wsmigrate.metrics import WsMetrics
from wsmigrate.unified import EventBus

log = logging.getLogger(__name__)

PROBE_AGENT = "wsmigrate probe"
PATHS = ("legacy", "unified")
RECONNECT_S = 1.0


@dataclass
class ProbeStatus:
    sent: int = 0
    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    missing: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    last_roundtrip_ms: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(PATHS))
    failing: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "received": self.received, "missing": self.missing,
                "last_roundtrip_ms": self.last_roundtrip_ms, "failing": sorted(self.failing)}


class ProbeRunner:
    def __init__(self, bus: EventBus, db: Database, metrics: WsMetrics, *, base_url: str,
                 interval_s: float, window_s: float, headers: Callable[[], dict[str, str]] | None = None) -> None:
        self.bus = bus
        self.db = db
        self.metrics = metrics
        self.ws_base = base_url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
        self.interval_s = interval_s
        self.window_s = window_s
        self.headers = headers or dict
        self.status = ProbeStatus()
        self.thread_id: int | None = None
        self.owner_id: int | None = None
        self._pending: dict[str, tuple[float, set[str]]] = {}
        self._ready: dict[str, asyncio.Event] = {p: asyncio.Event() for p in PATHS}
        self._tasks: list[asyncio.Task[None]] = []
        self._arrival = asyncio.Event()

    def _ensure_thread(self) -> int:
        with self.db.session() as session:
            agent = session.scalars(select(Agent).where(Agent.name == PROBE_AGENT)).first()
            if agent is None:
                agent = Agent(name=PROBE_AGENT, system_prompt="synthetic probes", status="idle", owner_id=self.owner_id)
                session.add(agent)
                session.flush()
                session.add(Thread(agent_id=agent.id, title="probe"))
                session.commit()
            thread = session.scalars(select(Thread).where(Thread.agent_id == agent.id)).first()
            assert thread is not None
            return thread.id

    async def start(self) -> None:
        self.thread_id = await run_in_threadpool(self._ensure_thread)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._client("legacy", f"{self.ws_base}/api/ws?thread_id={self.thread_id}", None)),
            loop.create_task(self._client("unified", f"{self.ws_base}/api/ws",
                                          {"type": "subscribe", "topics": [f"thread:{self.thread_id}"]})),
            loop.create_task(self._publish_loop()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_ready(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._ready.values())), timeout)

    async def _client(self, path: str, url: str, hello: dict[str, Any] | None) -> None:
        """Keep one probe socket open (reconnecting), and report every probe it receives."""
        attempts = 0
        while True:
            attempts += 1
            try:
                async with connect(url, open_timeout=10, additional_headers=self.headers()) as ws:
                    if hello is not None:
                        await ws.send(json.dumps(hello))
                    async for raw in ws:
                        self._on_frame(path, json.loads(raw))
            except (WebSocketException, OSError, TimeoutError) as exc:
                # The first attempt runs while the server is still starting: expected to fail.
                level = logging.DEBUG if attempts == 1 else logging.WARNING
                log.log(level, "probe %s client disconnected: %r; reconnecting", path, exc)
            self._ready[path].clear()
            await asyncio.sleep(RECONNECT_S)

    def _on_frame(self, path: str, frame: dict[str, Any]) -> None:
        if frame.get("type") in ("thread_history", "subscribed"):
            self._ready[path].set()
            return
        content = frame.get("content") if path == "legacy" else frame.get("data", {}).get("content")
        if frame.get("type") != "stream_chunk" or not isinstance(content, str):
            return
        pending = self._pending.get(content)
        if pending is None or path in pending[1]:
            return
        started, arrived = pending
        arrived.add(path)
        elapsed = time.monotonic() - started
        self.metrics.probe_roundtrip.labels(path).observe(elapsed)
        self.status.received[path] += 1
        self.status.last_roundtrip_ms[path] = round(elapsed * 1000, 3)
        self.status.failing.discard(path)
        self._arrival.set()

    async def wait_received(self, path: str, count: int, timeout: float) -> None:
        """Wait until `path`'s probe client has received `count` probes (tests, smoke checks)."""
        async with asyncio.timeout(timeout):
            while self.status.received[path] < count:
                self._arrival.clear()
                await self._arrival.wait()

    async def _publish_loop(self) -> None:
        sequence = 0
        while True:
            await asyncio.sleep(self.interval_s)
            self._check_missing()
            await self.probe_once(sequence)
            sequence += 1

    async def probe_once(self, sequence: int) -> str:
        assert self.thread_id is not None
        content = f"probe:{sequence}:{time.time_ns()}"
        self._pending[content] = (time.monotonic(), set())
        self.status.sent += 1
        await self.bus.publish(
            self.bus.new_event(ChatEvent.STREAM_CHUNK, {"thread_id": self.thread_id, "content": content}),
            origin="probe")
        return content

    def _check_missing(self) -> None:
        now = time.monotonic()
        for content, (started, arrived) in list(self._pending.items()):
            if now - started < self.window_s:
                continue
            del self._pending[content]
            for path in PATHS:
                if path not in arrived:
                    self.metrics.probe_missing.labels(path).inc()
                    self.status.missing[path] += 1
                    self.status.failing.add(path)

    @property
    def healthy(self) -> bool:
        return not self.status.failing
