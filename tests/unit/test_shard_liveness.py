"""The liveness gauges of a sharded bus say the worst of its readers, computed at most once per
window, and a change inside the window is reported at its end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from wsmigrate.metrics import WsMetrics
from wsmigrate.unified.shard_liveness import LivenessSummary


@dataclass
class Reader:
    live: bool = True
    age: float = 0.5

    def healthy(self) -> bool:
        return self.live

    def heartbeat_age(self) -> float:
        return self.age


async def test_the_gauges_say_the_worst_reader_and_a_change_inside_the_window_is_reported_at_its_end() -> None:
    metrics = WsMetrics(CollectorRegistry(), event_types=["thing_done"])
    up, age = metrics.bus_listener_up, metrics.bus_heartbeat_age
    readers = [Reader(), Reader(age=0.2), Reader()]
    summary = LivenessSummary(metrics, lambda: readers, window_s=0.2)
    summary.report()
    assert (up._value.get(), age._value.get()) == (1, 0.5)

    readers[1].live, readers[1].age = False, 4.0
    summary.report()  # inside the window: held back ...
    assert up._value.get() == 1
    async with asyncio.timeout(5):
        while up._value.get() != 0:  # noqa: ASYNC110 - a gauge cell has nothing to wait on
            await asyncio.sleep(0.01)  # ... and made at the window's end
    assert age._value.get() == 4.0

    readers[1].live = True
    summary.report()
    summary.flush()  # now, whatever the window
    assert up._value.get() == 1


def test_without_metrics_nothing_is_reported() -> None:
    summary = LivenessSummary(None, lambda: [Reader(live=False)])
    summary.report()
    summary.flush()
