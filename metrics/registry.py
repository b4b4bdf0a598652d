"""Every metric wsmigrate exports, built against an injected registry.

Why one class: the label sets are closed (never ids or topics), and every combination is
initialised to zero at start-up so that dashboards and alert expressions never meet a missing
series. Keeping the definitions together is the only way to guarantee both.

The event-type label values are passed in by the composition root (`bridge`), because this base
layer must not import the packages that define the catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import product

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric, disable_created_metrics
from prometheus_client.registry import Collector

from wsmigrate.metrics.batch import MetricBatch

# `_created` series double the exposition size and no wsmigrate dashboard or alert reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX = "wsmigrate"

ORIGINS = ("legacy_call", "bus", "outbox", "admin", "probe")
BRIDGE_OUTCOMES = ("mirrored", "skipped", "error")
PATHS = ("legacy", "unified")
COMPLETION_OUTCOMES = ("delivered", "no_recipients", "failed", "dropped")
DELIVERY_OUTCOMES = ("sent", "send_error", "slow_consumer_drop", "shadow")
COMPARISON_OUTCOMES = (
    "match",
    "mismatch_payload",
    "missing_legacy",
    "missing_unified",
    "duplicate_legacy",
    "duplicate_unified",
    "ignored",
    "late",
)
SKIP_REASONS = ("sampled_out", "capacity")
ROUNDTRIP_OUTCOMES = ("exact", "lossy")
# why a bus reader could not deliver everything (`unified.bus_reader`): a seq that did not follow on
# or pushes lost with a connection, a Redis that lost its data, entries trimmed before they were read
BUS_DISCONTINUITY_REASONS = ("gap", "reset", "trimmed")
UNDECLARED_FRAME = "undeclared"  # the frame-type label of legacy frames the translations do not know
UNIFIED_KIND = "unified"  # the other connection kinds are the legacy views an application declares
STAGES = ("off", "shadow", "live", "complete")
PROTOCOL_ERROR_CODES = (
    "invalid_topic", "not_found", "forbidden", "bad_message", "too_many_topics", "rate_limited", "unavailable",
)
CLOSE_REASONS = (
    "normal", "slow_consumer", "abuse", "heartbeat_timeout", "shutdown", "auth", "limit", "refused", "error",
)
HANDLER_OUTCOMES = ("ok", "error", "dropped")
# What happened to events of the transactional outbox (wsmigrate.unified.transactional_outbox):
# committed with their change; published by the relay; already on the bus (a re-publish after a
# crash or by another worker, suppressed by event_id); deferred to the table sweep (the bus was
# down or a backlog was being worked off); a publish attempt or a table read/delete that failed.
OUTBOX_OUTCOMES = ("committed", "published", "duplicate", "deferred", "publish_failed", "store_failed")

# Latency buckets in seconds: sub-millisecond resolution, because the unified path's p99 on
# loopback is a few milliseconds and coarse default buckets would hide regressions.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Collector pauses: a young collection takes microseconds, a full one with 10,000 sockets ~1 s.
GC_PAUSE_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_GENERATIONS = ("0", "1", "2")


def _initialise(metric: Counter | Gauge | Histogram, *label_sets: Iterable[str]) -> None:
    """Touch every label combination so it is exported as 0 before the first event."""
    for combination in product(*label_sets):
        metric.labels(*combination)


class _FlushFirst(Collector):
    """Registered first, so every read of the registry publishes the pending tallies before the
    metrics are collected (see `metrics.ledger`)."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        self._flush()
        return []


class WsMetrics:
    """All wsmigrate metrics, registered on `registry`.

    `event_types` is the closed set of `event_type` label values (the catalogue plus `unknown`
    for legacy frames the bridge cannot translate), `connection_kinds` that of the `kind` label
    (`unified` and the application's legacy views): both are declared by the application at start.
    """

    def __init__(self, registry: CollectorRegistry, *, event_types: Sequence[str],
                 connection_kinds: Sequence[str] = (UNIFIED_KIND,), legacy_only_frames: Sequence[str] = ()) -> None:
        self.registry = registry
        self.event_types: tuple[str, ...] = tuple(event_types)
        self.connection_kinds: tuple[str, ...] = tuple(dict.fromkeys((UNIFIED_KIND, *connection_kinds)))
        kinds = self.connection_kinds
        self.batch = MetricBatch()
        registry.register(_FlushFirst(self.batch.flush_from_any_thread))
        types = self.event_types
        r = registry

        self.events_published = Counter(
            f"{PREFIX}_events_published", "Logical events entering the system, once each, by origin.",
            ["event_type", "origin"], registry=r,
        )
        _initialise(self.events_published, types, ORIGINS)

        self.bridge_events = Counter(
            f"{PREFIX}_bridge_events", "Legacy broadcasts seen by the bridge, by what it did with them.",
            ["event_type", "outcome"], registry=r,
        )
        _initialise(self.bridge_events, types, BRIDGE_OUTCOMES)

        # What still keeps the legacy path alive: broadcasts of frame types that carry no event type
        # (declared legacy-only, or not declared at all).
        self.legacy_only_broadcasts = Counter(
            f"{PREFIX}_legacy_only_broadcasts", "Legacy broadcasts of frame types with no event type, delivered "
            "the old way.", ["frame_type"], registry=r,
        )
        _initialise(self.legacy_only_broadcasts, (*legacy_only_frames, UNDECLARED_FRAME))

        self.path_events_accepted = Counter(
            f"{PREFIX}_path_events_accepted", "Events a delivery path took responsibility for.",
            ["event_type", "path"], registry=r,
        )
        _initialise(self.path_events_accepted, types, PATHS)

        # Registered before `completed` on purpose: a scrape reads metrics in registration order,
        # and reading accepted -> inflight -> completed while events complete can only make the
        # gap accepted - completed - inflight negative, never a false loss (also across workers).
        self.path_events_inflight = Gauge(
            f"{PREFIX}_path_events_inflight", "Events accepted by a path and not yet completed.",
            ["event_type", "path"], registry=r, multiprocess_mode="livesum",
        )
        _initialise(self.path_events_inflight, types, PATHS)

        self.path_events_completed = Counter(
            f"{PREFIX}_path_events_completed", "Events a delivery path finished with, by outcome.",
            ["event_type", "path", "outcome"], registry=r,
        )
        _initialise(self.path_events_completed, types, PATHS, COMPLETION_OUTCOMES)

        self.recipient_deliveries = Counter(
            f"{PREFIX}_recipient_deliveries", "Per-recipient frame deliveries, by outcome.",
            ["event_type", "path", "outcome"], registry=r,
        )
        _initialise(self.recipient_deliveries, types, PATHS, DELIVERY_OUTCOMES)

        self.comparisons = Counter(
            f"{PREFIX}_comparisons", "Dual-path comparisons of (event, recipient) pairs, by outcome.",
            ["event_type", "outcome"], registry=r,
        )
        _initialise(self.comparisons, types, COMPARISON_OUTCOMES)

        self.legacy_recipient_frames = Counter(
            f"{PREFIX}_legacy_recipient_frames", "Frames each path produced for legacy-socket recipients of a "
            "compared event (sent, or computed for the comparison: shadow): the delivery ratio compares "
            "these, like with like (native unified clients are not counted).",
            ["event_type", "path", "outcome"], registry=r,
        )
        _initialise(self.legacy_recipient_frames, types, PATHS, ("sent", "shadow"))

        self.comparisons_recipients_only = Counter(
            f"{PREFIX}_comparisons_recipients_only", "Decided comparisons of events published on the bus "
            "(`@publish_event`): they have no application frame, so recipients were compared, not payloads.",
            ["event_type"], registry=r,
        )
        _initialise(self.comparisons_recipients_only, types)

        self.translation_roundtrips = Counter(
            f"{PREFIX}_translation_roundtrips", "Mirrored legacy frames rendered back from their event: the "
            "same frame (exact) or not (lossy: legacy clients would get another frame from the unified path).",
            ["event_type", "outcome"], registry=r,
        )
        _initialise(self.translation_roundtrips, types, ROUNDTRIP_OUTCOMES)

        self.comparisons_skipped = Counter(
            f"{PREFIX}_comparisons_skipped", "Observations the comparator did not compare, and why.",
            ["event_type", "reason"], registry=r,
        )
        _initialise(self.comparisons_skipped, types, SKIP_REASONS)

        self.delivery_latency = Histogram(
            f"{PREFIX}_delivery_latency_seconds", "Time from ingress to the socket write.",
            ["path"], registry=r, buckets=LATENCY_BUCKETS,
        )
        _initialise(self.delivery_latency, PATHS)

        self.connections = Gauge(
            f"{PREFIX}_connections", "Open WebSocket connections.", ["kind"], registry=r,
            multiprocess_mode="livesum",
        )
        _initialise(self.connections, kinds)

        self.connections_opened = Counter(
            f"{PREFIX}_connections_opened", "WebSocket connections accepted.", ["kind"], registry=r,
        )
        _initialise(self.connections_opened, kinds)

        self.http_head_timeouts = Counter(
            f"{PREFIX}_http_head_timeouts", "HTTP connections closed because their request head did not arrive "
            "in time (slowloris).", registry=r,
        )

        self.connections_closed = Counter(
            f"{PREFIX}_connections_closed", "WebSocket connections closed, by reason.", ["kind", "reason"],
            registry=r,
        )
        _initialise(self.connections_closed, kinds, CLOSE_REASONS)

        self.subscriptions = Gauge(
            f"{PREFIX}_subscriptions", "Live (connection, topic) subscriptions.", ["kind"], registry=r,
            multiprocess_mode="livesum",
        )
        _initialise(self.subscriptions, kinds)

        self.protocol_errors = Counter(
            f"{PREFIX}_protocol_errors", "Error frames sent to clients, by error code.", ["path", "code"],
            registry=r,
        )
        _initialise(self.protocol_errors, PATHS, PROTOCOL_ERROR_CODES)

        self.bus_handler_events = Counter(
            f"{PREFIX}_bus_handler_events", "Events handed to bus subscribers, by outcome (dropped = queue full).",
            ["outcome"], registry=r,
        )
        _initialise(self.bus_handler_events, HANDLER_OUTCOMES)

        self.bus_entries_skipped = Counter(
            f"{PREFIX}_bus_entries_skipped",
            "Bus entries this worker read but did not decode: nothing on it needed them.",
            registry=r,
        )
        self.bus_discontinuities = Counter(
            f"{PREFIX}_bus_discontinuities",
            "Times this worker's bus reader could not deliver everything, by reason; each closed every socket (1012).",
            ["reason"], registry=r,
        )
        for reason in BUS_DISCONTINUITY_REASONS:
            self.bus_discontinuities.labels(reason)
        self.bus_resumed_entries = Counter(
            f"{PREFIX}_bus_resumed_entries",
            "Entries a topic follower read back from its stream after a lost connection: delivered, no socket closed.",
            registry=r,
        )
        self.bus_followed_channels = Gauge(
            f"{PREFIX}_bus_followed_channels",
            "Redis channels this worker follows with delivery by topics: its topics, event types and heartbeats.",
            registry=r, multiprocess_mode="livesum",
        )
        self.bus_duplicates_suppressed = Counter(
            f"{PREFIX}_bus_duplicates_suppressed", "Publishes ignored because their event_id was already seen.",
            registry=r,
        )

        self.outbox_events = Counter(
            f"{PREFIX}_outbox_events", "Events of the transactional outbox, by what happened to them.",
            ["outcome"], registry=r,
        )
        _initialise(self.outbox_events, OUTBOX_OUTCOMES)
        self.outbox_backlog = Gauge(
            f"{PREFIX}_outbox_backlog", "Committed events waiting in the outbox table, as this worker's "
            "relay last counted them (0 without an outbox).", registry=r, multiprocess_mode="max",
        )
        self.outbox_oldest_age = Gauge(
            f"{PREFIX}_outbox_oldest_age_seconds", "Age of the oldest committed event not yet published "
            "(0 when none waits).", registry=r, multiprocess_mode="max",
        )

        self.event_type_stage = Gauge(
            f"{PREFIX}_event_type_stage", "1 for the stage each event type is in, 0 for the others.",
            ["event_type", "stage"], registry=r, multiprocess_mode="liveall",
        )
        _initialise(self.event_type_stage, types, STAGES)

        self.flags_rejections = Counter(
            f"{PREFIX}_flags_rejections", "Flag values read from the team's flag system that were not applied "
            "(not a stage, a wrong type, a skipped stage, a provider error or not ready).", registry=r,
        )

        self.stage_changes = Counter(
            f"{PREFIX}_flags_stage_changes", "Changes of an event type's stage in force that this process took "
            "up, whichever store they came from (one per process, so a change on 4 workers counts 4).",
            ["event_type", "from_stage", "to_stage"], registry=r,
        )

        self.flags_revision = Gauge(
            f"{PREFIX}_flags_revision", "Revision of the flags document this process runs.", registry=r,
            multiprocess_mode="liveall",
        )

        self.gc_pause = Histogram(
            f"{PREFIX}_gc_pause_seconds", "Pauses of CPython's cycle collector, by the oldest generation collected.",
            ["generation"], registry=r, buckets=GC_PAUSE_BUCKETS,
        )
        _initialise(self.gc_pause, GC_GENERATIONS)
        self.gc_frozen = Gauge(
            f"{PREFIX}_gc_frozen_objects", "Objects in CPython's permanent generation, which no collection walks.",
            registry=r, multiprocess_mode="liveall",
        )

        self.probe_roundtrip = Histogram(
            f"{PREFIX}_probe_roundtrip_seconds", "Synthetic probe publish-to-receive time at the client edge.",
            ["path"], registry=r, buckets=LATENCY_BUCKETS,
        )
        _initialise(self.probe_roundtrip, PATHS)

        self.probe_missing = Counter(
            f"{PREFIX}_probe_missing", "Synthetic probes that did not arrive within their window.", ["path"],
            registry=r,
        )
        _initialise(self.probe_missing, PATHS)

        self.bus_listener_up = Gauge(
            f"{PREFIX}_bus_listener_up", "1 while this worker's bus listener is connected and reading.",
            registry=r, multiprocess_mode="liveall",
        )
        self.bus_heartbeat_age = Gauge(
            f"{PREFIX}_bus_heartbeat_age_seconds", "Age of the newest heartbeat this worker read from the bus.",
            registry=r, multiprocess_mode="liveall",
        )

    def set_stage(self, event_type: str, stage: str) -> None:
        """Export `stage` as the one active stage of `event_type` (the others read 0)."""
        for candidate in STAGES:
            self.event_type_stage.labels(event_type, candidate).set(1 if candidate == stage else 0)
