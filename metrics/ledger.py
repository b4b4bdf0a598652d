"""Per-path delivery accounting: the conservation law accepted = completed + inflight.

It lives in the base layer because both delivery paths (`legacy` and `unified`) account their
deliveries the same way and may not import each other.

Each path that takes an event opens a `DeliveryTicket` for it; each recipient write reports its
outcome to the ticket, and the last one completes the event with one outcome. Update order is
chosen so a scrape racing an update can only see `accepted - completed - inflight <= 0`, never a
false loss: accept raises inflight before accepted; complete raises completed before lowering
inflight.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from metrics.registry import WsMetrics

RecipientOutcome = Literal["sent", "send_error", "slow_consumer_drop"]


class PathLedger:
    """Counts for one path (`legacy` or `unified`), with label children cached per event type."""

    def __init__(self, metrics: WsMetrics | None, path: str) -> None:
        self.metrics = metrics
        self.path = path
        self._children: dict[str, dict[str, Any]] = {}

    def _for(self, event_type: str) -> dict[str, Any]:
        children = self._children.get(event_type)
        if children is None:
            m = self.metrics
            assert m is not None
            p = self.path
            children = {
                "accepted": m.path_events_accepted.labels(event_type, p),
                "inflight": m.path_events_inflight.labels(event_type, p),
                "delivered": m.path_events_completed.labels(event_type, p, "delivered"),
                "no_recipients": m.path_events_completed.labels(event_type, p, "no_recipients"),
                "failed": m.path_events_completed.labels(event_type, p, "failed"),
                "dropped": m.path_events_completed.labels(event_type, p, "dropped"),
                "sent": m.recipient_deliveries.labels(event_type, p, "sent"),
                "send_error": m.recipient_deliveries.labels(event_type, p, "send_error"),
                "slow_consumer_drop": m.recipient_deliveries.labels(event_type, p, "slow_consumer_drop"),
                "shadow": m.recipient_deliveries.labels(event_type, p, "shadow"),
                "latency": m.delivery_latency.labels(p),
            }
            self._children[event_type] = children
        return children

    def open(self, event_type: str, ingress_ns: int, recipients: int) -> DeliveryTicket | None:
        """Accept an event with `recipients` writes to come; None when metrics are off."""
        if self.metrics is None:
            return None
        children = self._for(event_type)
        children["inflight"].inc()
        children["accepted"].inc()
        if recipients == 0:
            children["no_recipients"].inc()
            children["inflight"].dec()
            return None
        return DeliveryTicket(children, ingress_ns, recipients)

    def shadow(self, event_type: str, recipients: int = 1) -> None:
        """Count frames a path computed but did not send (shadow and live comparisons)."""
        if self.metrics is not None and recipients:
            self._for(event_type)["shadow"].inc(recipients)


class DeliveryTicket:
    """Tracks the outstanding recipient writes of one event on one path."""

    __slots__ = ("_children", "_dropped", "_failed", "_remaining", "ingress_ns")

    def __init__(self, children: dict[str, Any], ingress_ns: int, recipients: int) -> None:
        self._children = children
        self.ingress_ns = ingress_ns
        self._remaining = recipients
        self._failed = False
        self._dropped = False

    def add_recipients(self, count: int) -> None:
        self._remaining += count

    def done(self, outcome: RecipientOutcome) -> None:
        children = self._children
        children[outcome].inc()
        if outcome == "sent":
            children["latency"].observe((time.perf_counter_ns() - self.ingress_ns) / 1e9)
        elif outcome == "send_error":
            self._failed = True
        else:
            self._dropped = True
        self._remaining -= 1
        if self._remaining == 0:
            final = "dropped" if self._dropped else "failed" if self._failed else "delivered"
            children[final].inc()
            children["inflight"].dec()
