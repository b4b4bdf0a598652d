"""Synthetic probes: close the loop at the client edge, on both paths, all the time.

The server keeps one loopback legacy client (a real socket on the probe's own legacy view,
`<unified path>?wsmigrate_probe=1`) and one unified client (a real socket subscribed to the
reserved `probe` topic). Every few seconds it publishes a probe event through the same ingress as
real events: wsmigrate's own type `wsmigrate_probe` on the `probe` topic (`origin="probe"`), so no
application type's figures count it and no application client receives it. Each client reports
when the probe arrives: `probe_roundtrip_seconds{path}`; a probe that has not arrived within the
window counts in `probe_missing_total{path}` and turns `/healthz` degraded. The unified probe
client answers the server's heartbeat like any client; a failed publish (the bus is down) is
counted as missing on both paths and probing goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from wsmigrate.legacy.views import LegacyView
from wsmigrate.metrics import WsMetrics, WsMigrateError
from wsmigrate.unified import EventBus
from wsmigrate.unified.topics import PROBE_TOPIC

log = logging.getLogger(__name__)

PROBE_EVENT = "wsmigrate_probe"
PROBE_SCOPE = "wsmigrate_probe"
PROBE_PARAM = "wsmigrate_probe"
PROBE_KIND = "wsmigrate_probe"  # the connection kind of the legacy probe socket
PROBE_UNIFIED_KIND = "wsmigrate_probe_unified"  # and of the unified probe client
PROBE_TARGET = "1"  # the one target of the probe scope
PATHS = ("legacy", "unified")
RECONNECT_S = 1.0


def probe_view(path: str) -> LegacyView:
    """The probe's own legacy view, on the application's unified path."""
    return LegacyView(kind=PROBE_KIND, scope=PROBE_SCOPE, path=path, param=PROBE_PARAM, id_type="slug")


@dataclass
class ProbeStatus:
    sent: int = 0
    publish_failures: int = 0
    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    missing: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    last_roundtrip_ms: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(PATHS))
    failing: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "publish_failures": self.publish_failures, "received": self.received,
                "missing": self.missing, "last_roundtrip_ms": self.last_roundtrip_ms,
                "failing": sorted(self.failing)}


class ProbeRunner:
    def __init__(self, bus: EventBus, metrics: WsMetrics, *, base_url: str, path: str, interval_s: float,
                 window_s: float, headers: Callable[[], dict[str, str]] | None = None) -> None:
        self.bus = bus
        self.metrics = metrics
        self.ws_url = base_url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + path
        self.interval_s = interval_s
        self.window_s = window_s
        self.headers = headers or dict
        self.status = ProbeStatus()
        self._pending: dict[str, tuple[float, set[str]]] = {}
        self._ready: dict[str, asyncio.Event] = {p: asyncio.Event() for p in PATHS}
        self._tasks: list[asyncio.Task[None]] = []
        self._arrival = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._client("legacy", f"{self.ws_url}?{PROBE_PARAM}={PROBE_TARGET}", None)),
            loop.create_task(self._client("unified", self.ws_url, {"type": "subscribe", "topics": [PROBE_TOPIC]})),
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
                    else:
                        self._ready[path].set()  # the legacy view is open once the handshake is
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("type") == "ping" and path == "unified":
                            await ws.send('{"type":"pong"}')  # the heartbeat, as every client answers it
                            continue
                        self._on_frame(path, frame)
            except (WebSocketException, OSError, TimeoutError) as exc:
                # The first attempt runs while the server is still starting: expected to fail.
                level = logging.DEBUG if attempts == 1 else logging.WARNING
                log.log(level, "probe %s client disconnected: %r; reconnecting", path, exc)
            self._ready[path].clear()
            await asyncio.sleep(RECONNECT_S)

    def _on_frame(self, path: str, frame: dict[str, Any]) -> None:
        if frame.get("type") == "subscribed":
            self._ready[path].set()
            return
        if frame.get("type") != PROBE_EVENT:
            return
        token = frame.get("token") if path == "legacy" else frame.get("data", {}).get("token")
        pending = self._pending.get(token) if isinstance(token, str) else None
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
            try:
                await self.probe_once(sequence)
            except (WsMigrateError, OSError) as exc:  # the bus is down: counted, probing goes on
                # (a backend raises its own errors, redis-py's included, as BusUnavailableError)
                self.status.publish_failures += 1
                log.warning("probe %d not published: %r", sequence, exc)
            sequence += 1

    async def probe_once(self, sequence: int) -> str:
        token = f"probe:{sequence}:{time.time_ns()}"
        self._pending[token] = (time.monotonic(), set())
        self.status.sent += 1
        await self.bus.publish(self.bus.new_event(PROBE_EVENT, {PROBE_PARAM: PROBE_TARGET, "token": token}),
                               origin="probe")
        return token

    def _check_missing(self) -> None:
        now = time.monotonic()
        for token, (started, arrived) in list(self._pending.items()):
            if now - started < self.window_s:
                continue
            del self._pending[token]
            for path in PATHS:
                if path not in arrived:
                    self.metrics.probe_missing.labels(path).inc()
                    self.status.missing[path] += 1
                    self.status.failing.add(path)

    @property
    def healthy(self) -> bool:
        return not self.status.failing
