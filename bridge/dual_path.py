"""The dual path: every event reaches every subscribed client exactly once, whichever path serves it.

How an event flows once `DualPath.install` ran (docs/architecture.md walks it in full):

1. **Ingress.** A legacy broadcast (`broadcast(scope, id, frame)`) is intercepted, translated into the
   canonical `Event` and published on the bus once (`origin="legacy_call"`), carrying the frame
   exactly as the application built it (`Ingress.source_frame`). The translation's fidelity is
   measured right there, at every stage: the event rendered back must be the same frame
   (`wsmigrate_translation_roundtrips_total{outcome="exact"|"lossy"}`, samples in
   `translation_samples`). A legacy frame the table does not know is delivered the old way and
   counted. A bus publish enters directly. Either
   way the bus asks `decide_rollout` for the event's `Rollout` (stage, cohort percentage, flags
   revision), read once, and carries it with the publication (`Publication.ingress.rollout`).
2. **Legacy path** (bus sink `on_publication`): takes the application's own frame (rendered from the
   event only for events published on the bus, which have none), finds the legacy sockets the old
   code would have reached, and for each decides from the rollout which path serves it.
   It sends where the legacy path serves and only computes where it is compared.
3. **Unified path**: the unified `ConnectionManager` serves unified clients as always, and legacy
   sockets through their compat connection (same socket, same ordered outbox) whose renderer,
   `render_compat`, renders the frame from the event through the translation (independently of the
   legacy path's frame, so the comparator compares two renderings) and applies the same decision
   the other way round.

A legacy connection is in a `shadow` type's live cohort when its stable bucket is under the
rollout's `live_percent`, or when the team's flag system puts its user there (`ProviderCohorts`,
for a store that implements `TargetedCohorts`; decided per connection, not per event).

Both paths decide with `serving_path(stage, in_live_cohort)` from the same rollout, so for any
event and socket exactly one of them writes, whatever the flags do meanwhile; and both enqueue on
the socket's single outbox inside the same synchronous bus dispatch, so per-topic order holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from wsmigrate.bridge.cohorts import ProviderCohorts
from wsmigrate.bridge.errors import BridgeError, TranslationError
from wsmigrate.bridge.flags import FlagStore, TargetedCohorts
from wsmigrate.bridge.frame_diff import PAYLOAD_SAMPLE_CHARS, canonical, text_differences
from wsmigrate.bridge.stages import (
    FlagsDocument,
    Stage,
    cohort_bucket,
    in_live_cohort,
    is_compared,
    resolve,
    serving_path,
)
from wsmigrate.bridge.translation import LegacyRoute, TranslationTable
from wsmigrate.legacy.frames import encode
from wsmigrate.legacy.manager import Broadcast, LegacyConnection, LegacyConnectionManager, Scope, TargetId
from wsmigrate.metrics import WsMetrics
from wsmigrate.metrics.registry import UNDECLARED_FRAME
from wsmigrate.unified import Connection, ConnectionManager, Event, EventBus, Publication
from wsmigrate.unified.outbox import Outbox
from wsmigrate.unified.publication import Rollout
from wsmigrate.unified.wire import EncodedFrame

log = logging.getLogger(__name__)

LEGACY_FRAME_KEY = "legacy"  # the legacy path's frame: the application's own, or rendered
RENDERED_FRAME_KEY = "legacy_rendered"  # the unified path's: always rendered from the event
TRANSLATION_SAMPLES = 100


class DeliveryObserver(Protocol):
    """Receives what each path sent or would have sent to each legacy recipient (the comparator)."""

    def observe(self, publication: Publication, path: str, recipient: str, payload: str, sent: bool) -> None: ...


_STAGE_OF: dict[str, Stage] = {stage.value: stage for stage in Stage}  # a rollout's stage name -> Stage


class DualPath:
    """Composes the legacy and unified managers around the bus (see module docstring)."""

    def __init__(
        self,
        bus: EventBus,
        unified: ConnectionManager,
        legacy: LegacyConnectionManager,
        flags: FlagStore,
        translations: TranslationTable,
        *,
        metrics: WsMetrics | None = None,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self.bus = bus
        self.unified = unified
        self.legacy = legacy
        self.flags = flags
        self.translations = translations
        self.metrics = metrics
        self.observer = observer
        self._buckets: dict[str, int] = {}
        self.cohorts: ProviderCohorts | None = None
        if isinstance(flags, TargetedCohorts):
            self.cohorts = ProviderCohorts(flags, flags.current, bus.catalog.names)
        # The rollout of each event type under the current flags document, resolved once per document.
        self._rollouts: dict[str, Rollout] = {}
        self._rollouts_of: FlagsDocument | None = None
        # Lossy round trips (frame -> event -> frame), newest last: what an operator reads to fix a row.
        self.translation_samples: deque[dict[str, Any]] = deque(maxlen=TRANSLATION_SAMPLES)
        self._frame_counters: dict[tuple[str, str, bool], Any] = {}

    def install(self) -> None:
        self.bus.decide_rollout(self.decide_rollout)
        # The legacy path needs a publication when this worker has legacy sockets at all: which of
        # them follow it is known only from the event's data (its legacy route), after decoding.
        # A bus that delivers by followed topics brings it what it needs anyway: each legacy socket's
        # compat connection follows the topic of every route the socket follows (`subscribed`).
        self.bus.attach(self.on_publication, interest=lambda _type, _topics: self.legacy.connection_count > 0,
                        every_publication=True, followed_topics_only=True)
        self.unified.compat_gate = self.unified_path_involved
        self.legacy.set_listener(self, label_for=self.frame_label)
        if self.cohorts is not None:
            self.cohorts.source.add_cohort_listener(self.cohorts.refresh_all)

    # -- ingress ---------------------------------------------------------------------------------

    def decide_rollout(self, event: Event, origin: str) -> Rollout:
        """The bus's rollout hook: the stage, cohort and flags revision an event carries from ingress.

        One `Rollout` is shared by every event of the type until the flags document changes.
        """
        document = self.flags.current()
        if document is not self._rollouts_of:
            self._rollouts, self._rollouts_of = {}, document
        rollout = self._rollouts.get(event.type)
        if rollout is None and self.bus.catalog.spec(event.type).internal:
            # wsmigrate's own probes prove each path's loop as it is: always served the `off` way
            rollout = self._rollouts[event.type] = Rollout(Stage.OFF.value, 0, document.revision)
        if rollout is None:
            resolution = resolve(document, event.type)
            rollout = self._rollouts[event.type] = Rollout(resolution.stage.value, resolution.live_percent,
                                                           resolution.revision)
        return rollout

    def frame_label(self, frame: Mapping[str, Any]) -> str:
        """The event type a legacy frame carries, as a metric label (`unknown` when none)."""
        known = self.translations.for_frame(frame)
        return known.event_type if known is not None and known.event_type is not None else "unknown"

    async def intercept(self, broadcast: Broadcast) -> bool:
        """Mirror a legacy broadcast onto the bus; False sends it the old way (never dropped).

        Whatever goes wrong while mirroring, the application's broadcast call never raises because
        of wsmigrate: the frame goes out the old way and the failure is counted."""
        try:
            translated = self.translations.to_event(broadcast.message)
        except TranslationError:
            translated = None
        if translated is None:
            self._count("unknown", "skipped")
            if self.metrics:
                known = self.translations.for_frame(broadcast.message)
                frame_type = known.frame_type if known is not None and known.legacy_only else UNDECLARED_FRAME
                self.metrics.legacy_only_broadcasts.labels(frame_type).inc()
            log.info("legacy frame type %r has no event type; delivered the old way", broadcast.message.get("type"))
            return False
        event_type, data = translated
        try:
            route = self.translations.legacy_route(event_type, data)
        except TranslationError as exc:
            route = None
            log.error("legacy %s frame has no target (%s); delivered the old way", event_type, exc)
        if route != (broadcast.scope, broadcast.target_id):
            # The frame's own data names another target than the call did: mirrored, the event
            # would reach other sockets than the application asked for. The old way it is.
            self._count(event_type, "error")
            log.error("legacy %s broadcast to %s %r carries target %r; delivered the old way", event_type,
                      broadcast.scope, broadcast.target_id, route)
            return False
        try:
            source = encode(broadcast.message)
        except (TypeError, ValueError) as exc:
            self._count(event_type, "error")
            log.error("legacy %s frame is not JSON (%r); delivered the old way", event_type, exc)
            return False
        self._check_round_trip(event_type, broadcast.message, source, data)
        try:
            await self.bus.publish(self.bus.new_event(event_type, data), origin="legacy_call", source_frame=source)
        except Exception as exc:  # noqa: BLE001 - the boundary with the app's code: nothing may escape
            self._count(event_type, "error")
            log.error("mirroring %s failed (%r); delivered the old way", event_type, exc)
            return False
        self._count(event_type, "mirrored")
        return True

    def _check_round_trip(self, event_type: str, frame: Mapping[str, Any], source: str,
                          data: Mapping[str, Any]) -> None:
        """Render the event back into a legacy frame and compare it with the one the app sent, the
        way the comparator compares the two paths' frames (`canonical`: same fields and values)."""
        try:
            rendered = encode(self.translations.legacy_frame(event_type, data))
        except (TranslationError, KeyError, TypeError, ValueError) as exc:
            rendered = json.dumps({"<cannot render>": repr(exc)})
        exact = canonical(rendered) == canonical(source)
        if self.metrics:
            self.metrics.translation_roundtrips.labels(event_type, "exact" if exact else "lossy").inc()
        if not exact:
            self.translation_samples.append({
                "event_type": event_type, "frame_type": frame.get("type"), "at": time.time(),
                "differences": text_differences(source, rendered), "legacy": source[:PAYLOAD_SAMPLE_CHARS],
                "unified": rendered[:PAYLOAD_SAMPLE_CHARS],
            })

    def _count(self, event_type: str, outcome: str) -> None:
        if self.metrics:
            self.metrics.bridge_events.labels(event_type, outcome).inc()

    # -- legacy connections seen by the unified manager -----------------------------------------

    def connected(self, connection: LegacyConnection) -> None:
        outbox = connection.outbox
        if not isinstance(outbox, Outbox):
            raise BridgeError("legacy sockets must use unified.outbox.Outbox so both paths share one queue")
        identity = connection.user_id or connection.client_id
        self._buckets[connection.client_id] = cohort_bucket(identity)
        if self.cohorts is not None:
            self.cohorts.add(connection.client_id, identity, connection.kind)
        compat = self.unified.add(outbox, kind=connection.kind, user_id=connection.user_id,
                                  renderer=self.render_compat, client_id=connection.client_id)
        if self.translations.global_topic is not None:
            self.unified.attach(compat, [self.translations.global_topic])

    def subscribed(self, connection: LegacyConnection, scope: Scope, target_id: TargetId) -> None:
        compat = self.unified.get(connection.client_id)
        if compat is not None:
            self.unified.attach(compat, [self.translations.topic_of(LegacyRoute(scope, target_id))])

    def disconnected(self, connection: LegacyConnection) -> None:
        self.unified.remove(connection.client_id)
        self._buckets.pop(connection.client_id, None)
        if self.cohorts is not None:
            self.cohorts.remove(connection.client_id)

    # -- rendering and decisions -----------------------------------------------------------------

    @staticmethod
    def unified_path_involved(publication: Publication) -> bool:
        """Whether the unified path serves or compares legacy sockets for this publication at all.

        In `off` it does neither, so the unified manager skips the legacy sockets' compat
        connections for it entirely: the legacy path alone routes the event (no double routing).
        """
        return publication.ingress.rollout.stage != Stage.OFF.value

    def _legacy_route(self, publication: Publication) -> LegacyRoute | None:
        try:
            return self.translations.legacy_route(publication.event.type, publication.event.data)
        except (TranslationError, KeyError) as exc:
            log.debug("event %s has no legacy form: %s", publication.event.event_id, exc)
            return None

    def _legacy_frame(self, publication: Publication) -> EncodedFrame:
        """The legacy path's frame: the application's own when it sent one, encoded once per publication."""
        source = publication.ingress.source_frame
        if source is None:
            return self._rendered_frame(publication)
        return publication.memo(LEGACY_FRAME_KEY, lambda: source)

    def _rendered_frame(self, publication: Publication) -> EncodedFrame:
        """The unified path's frame for legacy sockets: rendered from the event through the translation."""
        event = publication.event
        return publication.memo(RENDERED_FRAME_KEY,
                                lambda: encode(self.translations.legacy_frame(event.type, event.data)))

    def _live(self, client_id: str, rollout: Rollout, event_type: str) -> bool:
        """Whether this legacy connection is in the live cohort of the event's type (module docstring)."""
        if rollout.live_percent > 0 and in_live_cohort(self._buckets.get(client_id, 100), rollout.live_percent):
            return True
        return self.cohorts is not None and self.cohorts.live(client_id, event_type)

    def _per_connection(self, rollout: Rollout, stage: Stage) -> bool:
        """Whether recipients of this publication may be decided differently (a cohort exists)."""
        return rollout.live_percent > 0 or (self.cohorts is not None and stage is Stage.SHADOW)

    def render_compat(self, publication: Publication, topic: str, connection: Connection) -> EncodedFrame | None:
        """The unified path's frame for a legacy socket: legacy-shaped, and only where it serves."""
        route = self._legacy_route(publication)
        if route is None or self.translations.topic_of(route) not in connection.topics:
            return None
        frame = self._rendered_frame(publication)
        rollout = publication.ingress.rollout
        stage = _STAGE_OF[rollout.stage]
        live = self._live(connection.client_id, rollout, publication.event_type)
        serves = serving_path(stage, live) == "unified"
        if is_compared(stage, live):
            self._observe(publication, "unified", connection.client_id, frame.text, sent=serves)
        return frame if serves else None

    def on_publication(self, publication: Publication) -> None:
        """Bus sink: the legacy path's share of an event's delivery (once: on part 0 of an event a
        sharded bus split, `Publication.secondary`)."""
        if publication.secondary:
            return
        route = self._legacy_route(publication)
        if route is None:
            return
        recipients = self.legacy.followers(route.scope, route.target_id)
        rollout = publication.ingress.rollout
        stage = _STAGE_OF[rollout.stage]
        legacy_serves_type = stage in (Stage.OFF, Stage.SHADOW)
        if not recipients:
            if legacy_serves_type:  # accounted on the legacy path, which serves this type
                self.legacy.send_frames((), "", publication.event_type, publication.ingress_ns)
            return
        frame = self._legacy_frame(publication)
        served: Collection[LegacyConnection]
        if not self._per_connection(rollout, stage):  # no cohort: one decision for every recipient
            served = recipients if legacy_serves_type else ()
            if is_compared(stage):
                for connection in recipients:
                    self._observe(publication, "legacy", connection.client_id, frame.text,
                                  sent=legacy_serves_type)
        else:
            chosen: list[LegacyConnection] = []
            for connection in recipients:
                live = self._live(connection.client_id, rollout, publication.event_type)
                serves = serving_path(stage, live) == "legacy"
                if serves:
                    chosen.append(connection)
                if is_compared(stage, live):
                    self._observe(publication, "legacy", connection.client_id, frame.text, sent=serves)
            served = chosen
        if served or legacy_serves_type:
            self.legacy.send_frames(served, frame, publication.event_type, publication.ingress_ns)

    def _observe(self, publication: Publication, path: str, recipient: str, text: str, *, sent: bool) -> None:
        event_type = publication.event_type
        if not sent:
            (self.legacy.ledger if path == "legacy" else self.unified.ledger).shadow(event_type)
        if self.metrics is not None:
            key = (event_type, path, sent)
            counter = self._frame_counters.get(key)
            if counter is None:  # `labels()` is slow: looked up once per combination
                counter = self._frame_counters[key] = self.metrics.legacy_recipient_frames.labels(
                    event_type, path, "sent" if sent else "shadow")
            counter.inc()
        if self.observer is not None:
            self.observer.observe(publication, path, recipient, text, sent)
