"""One liveness report for the readers of a Redis bus (one reader, or one per shard).

Each shard's reader knows whether it is live (`StreamListener.healthy`: its own heartbeats come
back through it). The worker exports one `wsmigrate_bus_listener_up` and one heartbeat age, and
they must say the worst of the readers: a worker with one shard unread is not live. Each reader
calls `report` whenever its own liveness is refreshed; the summary over all K readers is computed
at most every `window_s` (K readers each computing it would cost K^2 a second; with one reader the
window is 0 and every report is made at once), and a report that falls inside the window is made
at its end, so the last change is never left out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from wsmigrate.metrics import WsMetrics

DEFAULT_WINDOW_S = 0.25


class Reader(Protocol):
    def healthy(self) -> bool: ...

    def heartbeat_age(self) -> float: ...


class LivenessSummary:
    """Sets the liveness gauges from `readers()` (see module docstring)."""

    def __init__(self, metrics: WsMetrics | None, readers: Callable[[], Sequence[Reader]],
                 window_s: float = DEFAULT_WINDOW_S) -> None:
        self.metrics = metrics
        self.readers = readers
        self.window_s = window_s
        self._reported_at = float("-inf")
        self._pending: asyncio.TimerHandle | None = None

    def report(self) -> None:
        """A reader's liveness was refreshed: report now, or at the end of the window."""
        if self.metrics is None or self._pending is not None:
            return
        wait = self._reported_at + self.window_s - time.monotonic()
        if wait > 0:
            self._pending = asyncio.get_running_loop().call_later(wait, self._now)
        else:
            self._now()

    def flush(self) -> None:
        """Report now (after start, after stop), dropping a report the window holds back."""
        if self._pending is not None:
            self._pending.cancel()
        self._now()

    def _now(self) -> None:
        self._pending = None
        self._reported_at = time.monotonic()
        readers = self.readers()
        if self.metrics is None or not readers:
            return
        self.metrics.bus_listener_up.set(1 if all(reader.healthy() for reader in readers) else 0)
        self.metrics.bus_heartbeat_age.set(max(reader.heartbeat_age() for reader in readers))
