"""Tallied delivery accounting: exact on every read, published in the order that never shows a loss."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from wsmigrate.metrics import WsMetrics
from wsmigrate.metrics.batch import add_observations
from wsmigrate.metrics.ledger import PathLedger, settle
from wsmigrate.metrics.registry import LATENCY_BUCKETS


def fresh() -> tuple[WsMetrics, PathLedger]:
    metrics = WsMetrics(CollectorRegistry(), event_types=["stream_chunk"])
    return metrics, PathLedger(metrics, "unified")


def value(metrics: WsMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"event_type": "stream_chunk", "path": "unified", **labels}) or 0.0


def test_add_observations_equals_observing_one_by_one() -> None:
    """Pins the prometheus-client internals `add_observations` relies on (bucket cells and bounds)."""
    values = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.04, 0.9, 3.0, 7.5, 100.0]
    one_by_one = Histogram("h", "h", ["path"], registry=CollectorRegistry(), buckets=LATENCY_BUCKETS).labels("x")
    for v in values:
        one_by_one.observe(v)
    batched = Histogram("h", "h", ["path"], registry=CollectorRegistry(), buckets=LATENCY_BUCKETS).labels("x")
    bounds = list(batched._upper_bounds)
    counts = [0] * len(bounds)
    for v in values:
        counts[next(i for i, b in enumerate(bounds) if v <= b)] += 1
    add_observations(batched, counts, sum(values))
    assert [s for s in batched._child_samples()] == [s for s in one_by_one._child_samples()]


async def test_counts_are_exact_on_read_and_complete_per_event() -> None:
    metrics, ledger = fresh()
    tickets = [ledger.open("stream_chunk", 0, 3) for _ in range(4)]
    assert ledger.open("stream_chunk", 0, 0) is None  # no recipients: accepted and completed at once
    assert value(metrics, "wsmigrate_path_events_inflight") == 4
    written = [t for t in tickets[:3] for _ in range(3)]  # three events fully written
    settle(written)
    assert tickets[3] is not None
    tickets[3].done("sent")
    tickets[3].done("send_error")
    tickets[3].done("slow_consumer_drop")
    assert value(metrics, "wsmigrate_path_events_accepted_total") == 5
    assert value(metrics, "wsmigrate_path_events_completed_total", outcome="delivered") == 3
    assert value(metrics, "wsmigrate_path_events_completed_total", outcome="dropped") == 1
    assert value(metrics, "wsmigrate_path_events_completed_total", outcome="no_recipients") == 1
    assert value(metrics, "wsmigrate_recipient_deliveries_total", outcome="sent") == 10
    assert value(metrics, "wsmigrate_path_events_inflight") == 0


def test_counts_recorded_without_a_loop_are_published_on_the_next_read() -> None:
    metrics, ledger = fresh()
    for _ in range(3):
        ledger.open("stream_chunk", 0, 0)
    metrics.batch.add(metrics.events_published.labels("stream_chunk", "admin"))
    assert value(metrics, "wsmigrate_path_events_accepted_total") == 3
    assert value(metrics, "wsmigrate_path_events_completed_total", outcome="no_recipients") == 3
    published = metrics.registry.get_sample_value("wsmigrate_events_published_total",
                                                   {"event_type": "stream_chunk", "origin": "admin"})
    assert published == 1


async def test_pending_counts_are_published_by_the_timer_without_a_read() -> None:
    metrics, ledger = fresh()
    metrics.batch.interval_s = 0.01
    ledger.open("stream_chunk", 0, 0)
    child = metrics.path_events_accepted.labels("stream_chunk", "unified")
    async with asyncio.timeout(5):
        while child._value.get() != 1:  # noqa: ASYNC110 - polls the cell itself: a registry read would flush
            await asyncio.sleep(0.01)


def test_a_read_from_another_thread_sees_what_the_loop_recorded() -> None:
    metrics, ledger = fresh()
    loop = asyncio.new_event_loop()
    recorded = threading.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        def record() -> None:
            for _ in range(7):
                ledger.open("stream_chunk", 0, 0)
            recorded.set()

        loop.call_soon_threadsafe(record)
        assert recorded.wait(5)
        assert value(metrics, "wsmigrate_path_events_accepted_total") == 7  # flushed on the loop, then read
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


class _Watched:
    """Forwards inc/dec to a real child and checks the conservation gap after every update."""

    def __init__(self, child: Any, check: Any) -> None:
        self.child, self.check = child, check

    def inc(self, amount: float = 1) -> None:
        self.child.inc(amount)
        self.check()

    def dec(self, amount: float = 1) -> None:
        self.child.dec(amount)
        self.check()


async def test_a_reader_racing_the_flush_never_sees_a_false_loss() -> None:
    metrics, ledger = fresh()
    ledger.open("stream_chunk", 0, 0)
    metrics.batch.flush()
    tickets = [ledger.open("stream_chunk", 0, 2) for _ in range(5)]  # opened, some completed below
    settle([t for t in tickets[:3] for _ in range(2)])
    ledger.open("stream_chunk", 0, 0)
    tally = ledger._tallies["stream_chunk"]
    real = dict(tally.children)
    gaps: list[float] = []

    def check() -> None:
        accepted = real["accepted"]._value.get()
        completed = sum(real[o]._value.get() for o in ("delivered", "no_recipients", "failed", "dropped"))
        gaps.append(accepted - completed - real["inflight"]._value.get())

    tally.children = {name: _Watched(child, check) for name, child in real.items()}
    metrics.batch.flush()
    assert gaps
    assert max(gaps) <= 0
    assert gaps[-1] == 0  # and exact once the flush is through
