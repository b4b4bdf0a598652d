"""The bus backend seam and its in-memory implementation.

A backend sequences events (per-topic `seq` and epoch), keeps the bounded history used for replay,
suppresses re-published event ids inside a dedup window, and hands every sequenced event to the
local node exactly once through `deliver`. The in-memory backend does all of that inside one
process; the Redis backend (`unified.redis_backend`) does it for a whole deployment.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from wsmigrate.unified.events import Event
from wsmigrate.unified.history import TopicHistory
from wsmigrate.unified.publication import Ingress, Position, Publication

Deliver = Callable[[Publication], None]
Wants = Callable[[str, Sequence[str]], bool]  # (event type, topics) -> does this node need it
DEFAULT_DEDUP_WINDOW = 100_000


class BusBackend(Protocol):
    """What the `EventBus` needs from a transport. Contract-tested against every implementation."""

    async def start(self, deliver: Deliver, wants: Wants | None = None) -> None:
        """Begin handing sequenced publications to `deliver` (called on the event loop, in order).

        `wants` (the bus's `EventBus.wants`) lets a backend that reads publications made elsewhere
        skip, undecoded, those nothing on this node needs. None: deliver everything.
        """

    async def append(self, event: Event, topics: Sequence[str], ingress: Ingress) -> bool:
        """Sequence and store `event` on `topics`; False when its `event_id` was already published."""

    async def replay(self, topic: str, since: Position) -> list[Publication] | None:
        """Every publication of `topic` after `since`, or None when the history no longer has them all."""

    async def position(self, topic: str) -> Position:
        """The current position of `topic`, once this node delivered everything up to it."""

    async def positions(self, topics: Sequence[str]) -> dict[str, Position]:
        """The stored positions of `topics` in one cheap read (one round trip on Redis).

        For REST handlers serving a view's initial state (`unified.snapshot`): unlike `position`
        it does not wait for this node's delivery to catch up, because the client's subscription
        replays through `replay`, which does.
        """

    async def stop(self) -> None:
        """Release connections and tasks."""

    def healthy(self) -> bool:
        """True while events can flow through this backend."""

    def follow(self, topic: str) -> None:
        """Something on this node follows `topic` now (`EventBus.follow`). A backend that delivers
        each node only what it follows must, from the next `position`/`replay` of `topic` on,
        deliver every later publication of it; others may ignore it. Called on the event loop."""

    def unfollow(self, topic: str) -> None:
        """Nothing on this node follows `topic` any more."""

    def follow_types(self, event_types: frozenset[str]) -> None:
        """The event types this node needs whatever their topics (`EventBus.followed_types`)."""


class RecentIds:
    """A bounded set of recently seen event ids (oldest forgotten first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Remember `event_id`; False if it was already remembered."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


class MemoryBackend:
    """Single-process backend: sequencing, history and delivery happen inline in `append`."""

    def __init__(self, history: TopicHistory | None = None, *, dedup_window: int = DEFAULT_DEDUP_WINDOW) -> None:
        self.history = history or TopicHistory()
        self._recent = RecentIds(dedup_window)
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver, wants: Wants | None = None) -> None:
        self._deliver = deliver  # every publication is made here: `wants` would skip nothing worth it

    async def append(self, event: Event, topics: Sequence[str], ingress: Ingress) -> bool:
        if not self._recent.add(event.event_id):
            return False
        publication = sequence(self.history, event, topics, ingress)
        self.history.record(publication)
        if self._deliver is not None:
            self._deliver(publication)
        return True

    async def replay(self, topic: str, since: Position) -> list[Publication] | None:
        return self.history.since(topic, since)

    async def position(self, topic: str) -> Position:
        return self.history.position(topic)

    async def positions(self, topics: Sequence[str]) -> dict[str, Position]:
        return {topic: self.history.position(topic) for topic in topics}

    async def stop(self) -> None:
        self._deliver = None

    def healthy(self) -> bool:
        return True

    # every publication is made and delivered here: there is nothing to follow
    def follow(self, topic: str) -> None:
        pass

    def unfollow(self, topic: str) -> None:
        pass

    def follow_types(self, event_types: frozenset[str]) -> None:
        pass


def sequence(history: TopicHistory, event: Event, topics: Sequence[str], ingress: Ingress) -> Publication:
    """Number `event` on each of its topics and build its publication (primary topic first)."""
    seqs: dict[str, int] = {}
    epochs: dict[str, str] = {}
    for topic in topics:
        position = history.next_seq(topic)
        seqs[topic] = position.seq
        epochs[topic] = position.epoch
    primary = topics[0]
    stamped = event.sequenced(primary, seqs[primary], epochs[primary])
    return Publication(event=stamped, topics=tuple(topics), seqs=seqs, epochs=epochs, ingress=ingress)
