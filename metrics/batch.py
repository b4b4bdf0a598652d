"""Tallies of hot-path counts, published to Prometheus in bulk.

Why. A fan-out touches the delivery counters for every event and every recipient; prometheus-client
takes a lock and walks a few calls for each update, which together cost more than the delivery
itself. So the ledgers (`metrics.ledger`) count into plain integers per (path, event type), and
`MetricBatch.flush` adds them to the Prometheus metrics in bulk: at most `FLUSH_INTERVAL_S` after
the first change, and before every read of the registry (`/metrics`, `get_sample_value`: the
registry's first collector is a flush). A scrape of this process is therefore exact; in
multiprocess mode another worker's counts may be up to `FLUSH_INTERVAL_S` old.

Order. A reader racing a flush (another worker's scrape reads this worker's files) must never see a
false loss. `flush` applies, across every pending tally: the inflight increases; the completions
of events that had no recipient (accepted and completed at once, never in flight); accepted; the
other completions and the per-recipient outcomes; and the inflight decreases last. Every prefix
of that sequence shows `accepted - completed - inflight` no higher than before the flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

FLUSH_INTERVAL_S = 0.5
CROSS_THREAD_FLUSH_TIMEOUT_S = 2.0
COMPLETIONS = ("delivered", "no_recipients", "failed", "dropped")
_IN_FLIGHT_COMPLETIONS = ("delivered", "failed", "dropped")  # of events that were in flight
RECIPIENT_OUTCOMES = ("sent", "send_error", "slow_consumer_drop", "shadow")


def add_observations(histogram: Any, counts: Sequence[int], total: float) -> None:
    """Add pre-bucketed observations to a labelled `Histogram` child: `counts[i]` observations in
    bucket `i` (the child's own bounds, `_upper_bounds`), whose values add up to `total`.

    prometheus-client observes one value at a time, a locked update each. This uses the child's
    bucket bounds and value cells, which `tests/unit/test_ledger.py` pins against `observe` so
    that a library change cannot silently skew the histogram.
    """
    for index, count in enumerate(counts):
        if count:
            histogram._buckets[index].inc(count)
    histogram._sum.inc(total)


class Tally:
    """Unpublished counts of one (path, event type)."""

    __slots__ = ("accepted", "children", "closed", "delivered", "dirty", "dropped", "failed", "no_recipients",
                 "opened", "send_error", "sent", "shadow", "slow_consumer_drop")

    def __init__(self, children: dict[str, Any]) -> None:
        self.children = children
        self.dirty = False
        self.opened = self.accepted = self.closed = 0
        self.delivered = self.no_recipients = self.failed = self.dropped = 0
        self.sent = self.send_error = self.slow_consumer_drop = self.shadow = 0


class Latency:
    """Unpublished observations of one path's latency histogram."""

    __slots__ = ("bounds", "child", "counts", "dirty", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.dirty = False


class MetricBatch:
    """The pending tallies of every ledger of one `WsMetrics`, and when to publish them.

    Recording happens on one event loop; `flush` runs there (a timer, the `/metrics` handler) or,
    when another thread reads the registry, is handed to that loop and waited for.
    """

    def __init__(self, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._tallies: list[Tally] = []
        self._latencies: list[Latency] = []
        self._counts: dict[Any, float] = {}  # other counters' children -> pending increment
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sources: list[Callable[[], None]] = []

    def add_source(self, publish: Callable[[], None]) -> None:
        """Call `publish` at every flush: for recorders that cannot arm a flush themselves (the
        collector's pause recorder runs inside an allocation, where no event loop call is safe)."""
        self._sources.append(publish)

    def touched(self, tally: Tally) -> None:
        tally.dirty = True
        self._tallies.append(tally)
        self._arm()

    def add(self, counter: Any, amount: float = 1) -> None:
        """Increment a labelled counter child at the next flush (for other per-event counters)."""
        counts = self._counts
        if not counts:
            self._arm()
        counts[counter] = counts.get(counter, 0) + amount

    def touched_latency(self, latency: Latency) -> None:
        latency.dirty = True
        self._latencies.append(latency)
        self._arm()

    def _arm(self) -> None:
        """Schedule a flush. Called before the caller adds its counts, so it must not flush now; with
        no running loop (synchronous use) the next read of the registry publishes them."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loop = loop
        self._timer = loop.call_later(self.interval_s, self.flush)

    def flush(self) -> None:
        """Publish everything pending, in the order that never shows a false loss (module docstring)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tallies, self._tallies = self._tallies, []
        latencies, self._latencies = self._latencies, []
        counts, self._counts = self._counts, {}
        for publish in self._sources:
            publish()
        for counter, amount in counts.items():
            counter.inc(amount)
        for tally in tallies:
            if tally.opened:
                tally.children["inflight"].inc(tally.opened)
        for tally in tallies:  # events with no recipient are accepted and completed at once: completed first
            if tally.no_recipients:
                tally.children["no_recipients"].inc(tally.no_recipients)
        for tally in tallies:
            if tally.accepted:
                tally.children["accepted"].inc(tally.accepted)
        for tally in tallies:
            for name in (*_IN_FLIGHT_COMPLETIONS, *RECIPIENT_OUTCOMES):
                count = getattr(tally, name)
                if count:
                    tally.children[name].inc(count)
        for latency in latencies:
            add_observations(latency.child, latency.counts, latency.total)
            latency.counts = [0] * len(latency.bounds)
            latency.total = 0.0
            latency.dirty = False
        for tally in tallies:
            if tally.closed:
                tally.children["inflight"].dec(tally.closed)
            tally.opened = tally.accepted = tally.closed = 0
            tally.delivered = tally.no_recipients = tally.failed = tally.dropped = 0
            tally.sent = tally.send_error = tally.slow_consumer_drop = tally.shadow = 0
            tally.dirty = False

    def flush_from_any_thread(self) -> None:
        """`flush`, run on the recording loop when called from another thread (bounded wait)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            self.flush()
            return
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                self.flush()
                return
        done = threading.Event()

        def run() -> None:
            try:
                self.flush()
            finally:
                done.set()

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing more to publish
            loop.call_soon_threadsafe(run)
            done.wait(CROSS_THREAD_FLUSH_TIMEOUT_S)
