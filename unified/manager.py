"""`ConnectionManager`: who is connected, what they subscribed to, and routing events to them.

State is two maps kept in step: `topic -> client ids` and, on each connection, its topics. All
mutation happens on the event loop without awaiting in between, which is what makes subscribe,
replay and live delivery gap-free and duplicate-free:

1. a subscribing connection is first registered in *buffering* mode for the topic;
2. the position (or the replay after `since`) is read from the bus;
3. in one synchronous step the ack, the replayed events and the buffered live events newer than
   the last replayed `seq` are queued, and the topic switches to live.

Every event published after step 1 is either in the replay or in the buffer; the seq filter drops
the overlap. Connections of other protocols (legacy sockets served through the unified path) join
with a `renderer` that turns a publication into their own frame, or into nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from wsmigrate.metrics import WsMetrics
from wsmigrate.metrics.ledger import PathLedger
from wsmigrate.unified.backend import RecentIds
from wsmigrate.unified.bus import EventBus
from wsmigrate.unified.outbox import Outbox
from wsmigrate.unified.protocol import CloseCode, SubscribedAck, TopicPosition
from wsmigrate.unified.publication import Position, Publication
from wsmigrate.unified.wire import EncodedFrame

log = logging.getLogger(__name__)

Renderer = Callable[[Publication, str, "Connection"], EncodedFrame | None]
CompatGate = Callable[[Publication], bool]
DEFAULT_MAX_TOPICS = 100
_RECENT_MULTI_TOPIC_IDS = 256
_ids = itertools.count(1)
_PROCESS_TAG = f"{os.getpid():x}"


def new_client_id() -> str:
    return f"c{_PROCESS_TAG}-{next(_ids)}"


@dataclass(eq=False, slots=True)
class Connection:
    """One socket as the unified manager sees it."""

    client_id: str
    outbox: Outbox
    kind: str = "unified"
    user_id: str | None = None
    renderer: Renderer | None = None
    topics: set[str] = field(default_factory=set)
    # topic -> live publications held back while that topic's subscribe is being answered
    buffering: dict[str, list[Publication]] = field(default_factory=dict)
    # ids of multi-topic events already queued here (created with the first one: most sockets never need it)
    recent_multi: RecentIds | None = None
    last_seen: float = field(default_factory=time.monotonic)
    ping_sent_at: float | None = None
    close_reason: str | None = None

    def seen(self) -> None:
        """Any frame from the client proves it alive (and answers an outstanding ping)."""
        self.last_seen = time.monotonic()
        self.ping_sent_at = None

    def may_see(self, publication: Publication) -> bool:
        """An event with an audience (the catalogue's audience rule) reaches that user only."""
        audience = publication.ingress.audience
        return audience is None or self.user_id is None or self.user_id == audience

    def first_time(self, once_key: str) -> bool:
        """False if this multi-topic event (`Publication.once_key`) already reached the connection
        through another topic."""
        recent = self.recent_multi
        if recent is None:
            recent = self.recent_multi = RecentIds(_RECENT_MULTI_TOPIC_IDS)
        return recent.add(once_key)

    def frame(self, publication: Publication, topic: str) -> EncodedFrame | None:
        if self.renderer is None:
            return publication.encoded(topic)
        return self.renderer(publication, topic, self)


def _join(index: dict[str, set[Connection]], topic: str, connection: Connection, bus: EventBus) -> None:
    """Add `connection` to `index[topic]`; an index that starts holding the topic follows it on the
    bus (`EventBus.follow`, counted per index: a topic moving between indexes in one step stays)."""
    members = index.get(topic)
    if members is None:
        members = index[topic] = set()
        bus.follow(topic)
    members.add(connection)


def _leave(index: dict[str, set[Connection]], topic: str, connection: Connection, bus: EventBus) -> None:
    members = index.get(topic)
    if members is not None:
        members.discard(connection)
        if not members:
            del index[topic]
            bus.unfollow(topic)


class ConnectionManager:
    """Routes bus publications to the connections subscribed to their topics.

    Three indexes, `topic -> connections`, so that the live fan-out loop does nothing per
    recipient but queue one shared frame: `_live` (native connections receiving live),
    `_buffering` (native connections whose subscribe is being answered, see module docstring) and
    `_compat` (connections of another protocol with a renderer). The compat index is consulted
    only for publications the `compat_gate` lets through, so a compat connection costs nothing
    for events its renderer would turn into nothing anyway.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        metrics: WsMetrics | None = None,
        max_topics: int = DEFAULT_MAX_TOPICS,
        path: str = "unified",
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        self.max_topics = max_topics
        self.ledger = PathLedger(metrics, path)
        self.compat_gate: CompatGate = _always
        self._connections: dict[str, Connection] = {}
        self._live: dict[str, set[Connection]] = {}
        self._buffering: dict[str, set[Connection]] = {}
        self._compat: dict[str, set[Connection]] = {}
        bus.attach(self.on_publication, interest=self.follows_any, every_publication=True, followed_topics_only=True)

    # -- connections -----------------------------------------------------------------------------

    def add(
        self,
        outbox: Outbox,
        *,
        kind: str = "unified",
        user_id: str | None = None,
        renderer: Renderer | None = None,
        client_id: str | None = None,
    ) -> Connection:
        connection = Connection(
            client_id=client_id or new_client_id(), outbox=outbox, kind=kind, user_id=user_id, renderer=renderer
        )
        self._connections[connection.client_id] = connection
        if self.metrics and renderer is None:
            self.metrics.connections.labels(kind).inc()
            self.metrics.connections_opened.labels(kind).inc()
        return connection

    def remove(self, client_id: str) -> None:
        """Forget a connection and every subscription it held (idempotent)."""
        connection = self._connections.pop(client_id, None)
        if connection is None:
            return
        self._drop_topics(connection, list(connection.topics))
        if self.metrics and connection.renderer is None:
            self.metrics.connections.labels(connection.kind).dec()

    def get(self, client_id: str) -> Connection | None:
        return self._connections.get(client_id)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def topic_count(self) -> int:
        return len(self._live.keys() | self._buffering.keys() | self._compat.keys())

    def subscribers(self, topic: str) -> frozenset[str]:
        members = (*self._live.get(topic, ()), *self._buffering.get(topic, ()), *self._compat.get(topic, ()))
        return frozenset(c.client_id for c in members)

    def connections(self) -> Iterable[Connection]:
        return self._connections.values()

    def follows_any(self, event_type: str, topics: Iterable[str]) -> bool:
        """Whether a connection here follows one of `topics` (live, subscribing or compat): the
        manager's interest in a publication (`EventBus.attach`)."""
        return any(t in self._live or t in self._buffering or t in self._compat for t in topics)

    # -- subscriptions ---------------------------------------------------------------------------

    def _gauge_subscriptions(self, connection: Connection, delta: int) -> None:
        if self.metrics and delta and connection.renderer is None:
            self.metrics.subscriptions.labels(connection.kind).inc(delta)

    async def subscribe(
        self, connection: Connection, topics: list[str], since: Mapping[str, Position] | None = None,
        *, message_id: str | None = None,
    ) -> SubscribedAck:
        """Subscribe and queue the ack, replays and held-back events (see module docstring).

        A topic the connection already had keeps flowing live; `since` is ignored for it.
        """
        since = since or {}
        wanted = list(dict.fromkeys(topics))
        fresh = [t for t in wanted if t not in connection.topics]
        for topic in fresh:
            connection.topics.add(topic)
            connection.buffering[topic] = []
            _join(self._buffering, topic, connection, self.bus)
        self._gauge_subscriptions(connection, len(fresh))

        positions: dict[str, TopicPosition] = {}
        replays: dict[str, list[Publication]] = {}
        for topic in wanted:
            asked = since.get(topic) if topic in fresh else None
            replay = await self.bus.replay(topic, asked) if asked is not None else None
            if asked is not None and replay is not None:
                positions[topic] = TopicPosition(epoch=asked.epoch, seq=asked.seq, recovered=True)
                replays[topic] = replay
            else:
                current = await self.bus.position(topic)
                recovered = False if asked is not None else None
                positions[topic] = TopicPosition(epoch=current.epoch, seq=current.seq, recovered=recovered)
        if connection.client_id not in self._connections:
            return SubscribedAck(message_id=message_id, topics=wanted, positions=positions)
        # From here to the end: no await, so nothing can slip between the ack and going live.
        to_send: dict[str, list[Publication]] = {}
        replay_counts: dict[str, int] = {}  # the first n of a topic's `to_send` are its replay
        replayed_ids: set[str] = set()
        for topic in fresh:
            held = connection.buffering.pop(topic, None)
            if held is None:  # dropped while the subscribe was being answered
                continue
            _join(self._live, topic, connection, self.bus)  # before leaving: the topic stays followed
            _leave(self._buffering, topic, connection, self.bus)
            if topic in replays:
                replayed = replays[topic]
                # Asked for by `since`: sent even if the event reached this connection before through
                # another topic (a client re-subscribing from an older position needs it again),
                # once per subscribe.
                replayed_ids.update(p.once_key for p in replayed if len(p.topics) > 1)
                last = replayed[-1].seqs[topic] if replayed else positions[topic].seq
                to_send[topic] = replayed + [p for p in held if p.seqs[topic] > last]
                replay_counts[topic] = len(replayed)
            else:
                if held:  # the client starts just before the first event held back for it
                    start = min(held[0].seqs[topic] - 1, positions[topic].seq)
                    positions[topic] = positions[topic].model_copy(update={"seq": start})
                to_send[topic] = held
        ack = SubscribedAck(message_id=message_id, topics=wanted, positions=positions)
        connection.outbox.put(ack.model_dump_json(exclude_none=True))
        sent: set[str] = set()
        for topic, publications in to_send.items():
            replay_count = replay_counts.get(topic, 0)
            for index, publication in enumerate(publications):
                once_key = publication.once_key
                replayed_for_since = once_key in replayed_ids
                if replayed_for_since:
                    if once_key in sent:
                        continue
                    sent.add(once_key)
                    connection.first_time(once_key)  # remembered: a live copy on another topic is not sent
                self._deliver_one(connection, publication, topic, asked=replayed_for_since,
                                  replayed=index < replay_count)
        return ack

    def attach(self, connection: Connection, topics: Iterable[str]) -> None:
        """Subscribe live, with no ack, position or replay: for connections of another protocol
        (legacy sockets served through the unified path), whose clients never asked for topics."""
        index = self._live if connection.renderer is None else self._compat
        fresh = [t for t in dict.fromkeys(topics) if t not in connection.topics]
        for topic in fresh:
            connection.topics.add(topic)
            _join(index, topic, connection, self.bus)
        self._gauge_subscriptions(connection, len(fresh))

    def unsubscribe(self, connection: Connection, topics: Iterable[str]) -> list[str]:
        removed = [t for t in dict.fromkeys(topics) if t in connection.topics]
        self._drop_topics(connection, removed)
        return removed

    def _drop_topics(self, connection: Connection, topics: list[str]) -> None:
        for topic in topics:
            connection.topics.discard(topic)
            if connection.buffering.pop(topic, None) is not None:
                _leave(self._buffering, topic, connection, self.bus)
            else:
                _leave(self._live if connection.renderer is None else self._compat, topic, connection, self.bus)
        self._gauge_subscriptions(connection, -len(topics))

    # -- liveness --------------------------------------------------------------------------------

    def sweep_heartbeats(self, interval_s: float, timeout_s: float, ping_frame: str) -> int:
        """Ping quiet unified clients; close with 4408 those that did not answer in time.

        One sweep over all connections replaces a timer per connection. Returns how many were
        closed. Connections of other protocols (legacy sockets) keep their own liveness rules.
        """
        now = time.monotonic()
        closed = 0
        ping = EncodedFrame(ping_frame)
        for connection in list(self._connections.values()):
            if connection.renderer is not None or connection.outbox.closed:
                continue
            if connection.ping_sent_at is not None:
                if now - connection.ping_sent_at >= timeout_s:
                    connection.close_reason = "heartbeat_timeout"
                    connection.outbox.shutdown(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                    self.remove(connection.client_id)
                    closed += 1
            elif now - connection.last_seen >= interval_s:
                connection.ping_sent_at = now
                connection.outbox.put(ping)
        return closed

    # -- delivery --------------------------------------------------------------------------------

    def _deliver_one(self, connection: Connection, publication: Publication, topic: str, *,
                     asked: bool = False, replayed: bool = False) -> None:
        """Queue one publication outside the live fan-out (replays, held-back events). `asked`: a
        replay the client asked for with `since`, sent even if it came before on another topic.
        `replayed`: from history, so its write is counted but not timed (its age since ingress
        is not a delivery latency, and a reconnect storm would fill the histogram's top buckets)."""
        if not connection.may_see(publication):
            return
        if len(publication.topics) > 1 and not asked and not connection.first_time(publication.once_key):
            return
        frame = connection.frame(publication, topic)
        if frame is None:
            return
        ticket = self.ledger.open(publication.event_type, None if replayed else publication.ingress_ns, 1)
        connection.outbox.put(frame, ticket)

    def on_publication(self, publication: Publication) -> None:
        """Bus sink: queue the event for every subscriber of its topics, once per connection."""
        if len(publication.topics) > 1 or publication.ingress.audience is not None:
            self._fan_out_filtered(publication)
            return
        topic = publication.topics[0]
        buffering = self._buffering.get(topic)
        if buffering:
            for connection in buffering:
                connection.buffering[topic].append(publication)
        live = self._live.get(topic)
        compat = self._compat.get(topic) if self._compat and self.compat_gate(publication) else None
        rendered = self._render_compat(publication, topic, compat) if compat else ()
        recipients = (len(live) if live else 0) + len(rendered)
        ticket = self.ledger.open(publication.event_type, publication.ingress_ns, recipients)
        if live:
            frame = publication.encoded(topic)
            for connection in live:
                connection.outbox.put(frame, ticket)
        for connection, compat_frame in rendered:
            connection.outbox.put(compat_frame, ticket)

    @staticmethod
    def _render_compat(
        publication: Publication, topic: str, connections: Iterable[Connection],
    ) -> list[tuple[Connection, EncodedFrame]]:
        rendered: list[tuple[Connection, EncodedFrame]] = []
        for connection in connections:
            assert connection.renderer is not None
            frame = connection.renderer(publication, topic, connection)
            if frame is not None:
                rendered.append((connection, frame))
        return rendered

    def _fan_out_filtered(self, publication: Publication) -> None:
        """The general fan-out: several topics (each connection served once) or with an audience."""
        multi = len(publication.topics) > 1
        once_key = publication.once_key
        compat_open = bool(self._compat) and self.compat_gate(publication)
        seen: set[Connection] = set()
        targets: list[tuple[Connection, EncodedFrame]] = []
        for topic in publication.topics:
            for connection in self._buffering.get(topic, ()):
                if connection in seen or not connection.may_see(publication):
                    continue
                seen.add(connection)
                connection.buffering[topic].append(publication)
            members = [*self._live.get(topic, ()), *(self._compat.get(topic, ()) if compat_open else ())]
            for connection in members:
                if connection in seen or not connection.may_see(publication):
                    continue
                seen.add(connection)
                if multi and not connection.first_time(once_key):
                    continue
                frame = connection.frame(publication, topic)
                if frame is not None:
                    targets.append((connection, frame))
        ticket = self.ledger.open(publication.event_type, publication.ingress_ns, len(targets))
        for connection, frame in targets:
            connection.outbox.put(frame, ticket)


def _always(publication: Publication) -> bool:
    return True
