"""Per-path delivery accounting: the conservation law accepted = completed + inflight.

It lives in the base layer because both delivery paths (`legacy` and `unified`) account their
deliveries the same way and may not import each other.

Each path that takes an event opens a `DeliveryTicket` for it; each recipient write reports its
outcome to the ticket, and the last one completes the event with one outcome.

Counts are tallied in plain integers and published to Prometheus in bulk (`metrics.batch`
explains when, and why that never shows a false loss).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from typing import Any, Literal

from wsmigrate.metrics.batch import COMPLETIONS, RECIPIENT_OUTCOMES, Latency, MetricBatch, Tally
from wsmigrate.metrics.registry import WsMetrics

RecipientOutcome = Literal["sent", "send_error", "slow_consumer_drop"]


class PathLedger:
    """Counts for one path (`legacy` or `unified`), tallied per event type (module docstring)."""

    def __init__(self, metrics: WsMetrics | None, path: str) -> None:
        self.metrics = metrics
        self.path = path
        self._tallies: dict[str, Tally] = {}
        self._latency: Latency | None = None
        self._batch: MetricBatch | None = metrics.batch if metrics is not None else None

    def _for(self, event_type: str) -> Tally:
        tally = self._tallies.get(event_type)
        if tally is None:
            m = self.metrics
            assert m is not None
            p = self.path
            children: dict[str, Any] = {
                "accepted": m.path_events_accepted.labels(event_type, p),
                "inflight": m.path_events_inflight.labels(event_type, p),
            }
            for outcome in COMPLETIONS:
                children[outcome] = m.path_events_completed.labels(event_type, p, outcome)
            for outcome in RECIPIENT_OUTCOMES:
                children[outcome] = m.recipient_deliveries.labels(event_type, p, outcome)
            tally = self._tallies[event_type] = Tally(children)
        if not tally.dirty:
            assert self._batch is not None
            self._batch.touched(tally)
        return tally

    def open(self, event_type: str, ingress_ns: int | None, recipients: int) -> DeliveryTicket | None:
        """Accept an event with `recipients` writes to come; None when metrics are off. `ingress_ns`
        None: its writes are counted but not timed (a replay: its age is not a delivery latency)."""
        if self.metrics is None:
            return None
        tally = self._for(event_type)
        tally.accepted += 1
        if recipients == 0:
            tally.no_recipients += 1
            return None
        tally.opened += 1
        return DeliveryTicket(self, event_type, ingress_ns, recipients)

    def shadow(self, event_type: str, recipients: int = 1) -> None:
        """Count frames a path computed but did not send (shadow and live comparisons)."""
        if self.metrics is not None and recipients:
            self._for(event_type).shadow += recipients

    def observe_latency(self, seconds: float, count: int) -> None:
        latency = self._latency
        if latency is None:
            assert self.metrics is not None
            latency = self._latency = Latency(self.metrics.delivery_latency.labels(self.path))
        latency.counts[bisect_left(latency.bounds, seconds)] += count
        latency.total += seconds * count
        if not latency.dirty:
            assert self._batch is not None
            self._batch.touched_latency(latency)


class DeliveryTicket:
    """Tracks the outstanding recipient writes of one event on one path."""

    __slots__ = ("_dropped", "_failed", "_remaining", "event_type", "ingress_ns", "ledger")

    def __init__(self, ledger: PathLedger, event_type: str, ingress_ns: int | None, recipients: int) -> None:
        self.ledger = ledger
        self.event_type = event_type
        self.ingress_ns = ingress_ns
        self._remaining = recipients
        self._failed = False
        self._dropped = False

    def done(self, outcome: RecipientOutcome) -> None:
        """One recipient's write finished with `outcome`."""
        if outcome == "sent":
            self.sent(1)
            return
        tally = self.ledger._for(self.event_type)
        if outcome == "send_error":
            tally.send_error += 1
            self._failed = True
        else:
            tally.slow_consumer_drop += 1
            self._dropped = True
        self._remaining -= 1
        if self._remaining == 0:
            self._complete(tally)

    def sent(self, count: int) -> None:
        """`count` recipients' frames were written now (one latency for all: they left together)."""
        ledger = self.ledger
        tally = ledger._for(self.event_type)
        tally.sent += count
        if self.ingress_ns is not None:
            ledger.observe_latency((time.perf_counter_ns() - self.ingress_ns) / 1e9, count)
        self._remaining -= count
        if self._remaining == 0:
            self._complete(tally)

    def _complete(self, tally: Tally) -> None:
        if self._dropped:
            tally.dropped += 1
        elif self._failed:
            tally.failed += 1
        else:
            tally.delivered += 1
        tally.closed += 1


def settle(written: list[DeliveryTicket]) -> None:
    """Report frames a writer wrote: `written` (not empty) holds each written frame's ticket."""
    first = written[0]
    if written.count(first) == len(written):  # one event's fan-out (the usual case outside bursts)
        first.sent(len(written))
        return
    for ticket, count in Counter(written).items():
        ticket.sent(count)
