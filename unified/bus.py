"""The internal `EventBus`: one ingress for every event, ordered fan-out to in-process subscribers.

Two kinds of subscriber exist, for a reason:

* `subscribe(event_type, handler)` is for application code. Each subscription gets its own
  bounded queue drained by one task, so handlers run concurrently with each other, each sees
  events in publish order, a slow or failing handler never blocks `publish` or its peers, and an
  overflow is counted instead of growing memory.
* `attach(sink, interest)` is for delivery machinery (the connection managers, the bridge). A sink
  is called synchronously on the event loop with the sequenced `Publication`, in order; it must only
  enqueue work. That keeps per-topic order across everything a sink does without a task per event.

Interest. A sink attached with `interest(event_type, topics)` is called only with the
publications it says yes to; a sink without one gets every publication, and so does a handler
(`subscribe`) of the event's type or of all types. A backend whose workers all read one shared
stream (Redis) asks `wants(event_type, topics)` before it decodes an entry, and skips the entries
nothing on this worker needs, so a worker's cost follows its own subscriptions. wsmigrate's own
sinks (the connection manager, the bridge) are attached with `every_publication=True`: their
interest says which entries this worker must take in (a topic one of its connections follows, any
legacy socket), and they still see, and count, every publication it took in.

Following. A backend that can have each worker receive only what it needs (the Redis bus with
`?delivery=topics`, `unified.redis_follower`) is told what that is, in structure rather than as a
callable: the topics this node follows (`follow`/`unfollow`, called by the connection managers as
their indexes gain and lose a topic; counted, so a topic leaves only when nothing follows it) and
the event types it needs whatever their topics (`followed_types`: those of `subscribe` handlers and
of sinks attached with `event_types`). A sink attached with `followed_topics_only=True` (the
connection managers) needs nothing beyond the followed topics; a handler of every type, or a sink
that declares neither, makes the node need every declared type. Other backends ignore it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from wsmigrate.metrics import WsMetrics
from wsmigrate.unified.backend import BusBackend, MemoryBackend
from wsmigrate.unified.catalog import EventCatalog, EventName, event_name
from wsmigrate.unified.errors import BusClosedError
from wsmigrate.unified.events import Event
from wsmigrate.unified.publication import NO_ROLLOUT, Ingress, Position, Publication, Rollout

log = logging.getLogger(__name__)

Handler = Callable[[Event], Awaitable[None] | None]
Sink = Callable[[Publication], None]
Interest = Callable[[str, Sequence[str]], bool]  # (event type, topics) -> does this sink need it
RolloutHook = Callable[[Event, str], Rollout]
DEFAULT_HANDLER_QUEUE = 10_000
THREADSAFE_TIMEOUT_S = 10.0


class _HandlerWorker:
    """A bounded queue and a single task feeding one subscription."""

    def __init__(self, handler: Handler, capacity: int, metrics: WsMetrics | None) -> None:
        self.handler = handler
        self.capacity = capacity
        self.metrics = metrics
        self._queue: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dropping = False

    def offer(self, event: Event) -> None:
        if len(self._queue) >= self.capacity:
            if self.metrics:
                self.metrics.bus_handler_events.labels("dropped").inc()
            if not self._dropping:  # log once per overload episode; the counter has the total
                log.warning("bus handler %r is %d events behind; dropping events", self.handler, self.capacity)
                self._dropping = True
            return
        self._dropping = False
        self._queue.append(event)
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bus-handler-{self.handler!r}")

    async def _run(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            event = self._queue.popleft()
            try:
                result = self.handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("bus handler %r failed on event %s", self.handler, event.event_id)
                outcome = "error"
            else:
                outcome = "ok"
            if self.metrics:
                self.metrics.bus_handler_events.labels(outcome).inc()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class EventBus:
    """Sequenced publish/subscribe inside a node, over a pluggable `BusBackend`."""

    def __init__(
        self,
        backend: BusBackend | None = None,
        *,
        catalog: EventCatalog,
        metrics: WsMetrics | None = None,
        handler_queue_size: int = DEFAULT_HANDLER_QUEUE,
    ) -> None:
        self.backend: BusBackend = backend or MemoryBackend()
        self.catalog = catalog
        self.metrics = metrics
        self.handler_queue_size = handler_queue_size
        self._handlers: dict[str | None, dict[Handler, _HandlerWorker]] = {}
        # (sink, interest, called with every publication taken in whatever its interest says)
        self._sinks: list[tuple[Sink, Interest | None, bool]] = []
        # what the sinks need taken in beyond the followed topics: their event types, or None (all)
        self._sink_types: list[frozenset[str] | None] = []
        self._followed: dict[str, int] = {}  # topic -> how many indexes follow it (module docstring)
        self._rollout: RolloutHook | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._published: dict[tuple[str, str], Any] = {}  # (event type, origin) -> counter child, cached

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.backend.start(self._dispatch, self.wants)

    async def stop(self) -> None:
        await self.backend.stop()
        workers = [w for by_handler in self._handlers.values() for w in by_handler.values()]
        await asyncio.gather(*(w.stop() for w in workers))
        self._loop = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    # -- subscribers -----------------------------------------------------------------------------

    def subscribe(self, event_type: EventName | None, handler: Handler) -> None:
        """Call `handler(event)` for every event of `event_type` (None: every type)."""
        key = None if event_type is None else self.catalog.spec(event_type).name
        workers = self._handlers.setdefault(key, {})
        if handler not in workers:
            workers[handler] = _HandlerWorker(handler, self.handler_queue_size, self.metrics)
            self._types_changed()

    def unsubscribe(self, event_type: EventName | None, handler: Handler) -> None:
        key = None if event_type is None else event_name(event_type)
        worker = self._handlers.get(key, {}).pop(handler, None)
        if worker is not None and self._loop is not None:
            self._loop.create_task(worker.stop())
        self._types_changed()

    def attach(self, sink: Sink, interest: Interest | None = None, *, every_publication: bool = False,
               event_types: Iterable[EventName] | None = None, followed_topics_only: bool = False) -> None:
        """Register a synchronous delivery sink, called with the publications `interest` accepts (None:
        all). `every_publication`: called with all that this node takes in, `interest` only deciding
        which ones it must take in. `event_types` / `followed_topics_only`: what the sink needs this
        node to take in, for a backend that follows (module docstring, Following)."""
        self._sinks.append((sink, interest, every_publication))
        types = None if event_types is None else frozenset(self.catalog.spec(t).name for t in event_types)
        self._sink_types.append(frozenset() if followed_topics_only and types is None else types)
        self._types_changed()

    # -- following -------------------------------------------------------------------------------

    def follow(self, topic: str) -> None:
        """Something on this node follows `topic` now (counted; see module docstring, Following)."""
        count = self._followed.get(topic, 0)
        self._followed[topic] = count + 1
        if not count:
            self.backend.follow(topic)

    def unfollow(self, topic: str) -> None:
        count = self._followed.get(topic, 0)
        if count > 1:
            self._followed[topic] = count - 1
        elif count == 1:
            del self._followed[topic]
            self.backend.unfollow(topic)

    @property
    def followed_topics(self) -> frozenset[str]:
        return frozenset(self._followed)

    def followed_types(self) -> frozenset[str]:
        """The event types this node needs whatever their topics (module docstring, Following)."""
        if self._handlers.get(None) or any(types is None for types in self._sink_types):
            return frozenset((*self.catalog.names, *self.catalog.internal_names))
        needed = {name for name, workers in self._handlers.items() if name is not None and workers}
        for types in self._sink_types:
            needed.update(types or ())
        return frozenset(needed)

    def _types_changed(self) -> None:
        self.backend.follow_types(self.followed_types())

    def wants(self, event_type: str, topics: Sequence[str]) -> bool:
        """Whether anything on this node needs the publication of `event_type` on `topics`."""
        handlers = self._handlers
        if handlers.get(event_type) or handlers.get(None):
            return True
        return any(interest is None or interest(event_type, topics) for _, interest, _ in self._sinks)

    def decide_rollout(self, hook: RolloutHook) -> None:
        """`hook(event, origin)` makes the rollout decision of each event as it enters (the dual
        path's; there is one)."""
        self._rollout = hook

    # -- publishing ------------------------------------------------------------------------------

    def new_event(self, event_type: EventName, data: Mapping[str, Any], *, event_id: str | None = None) -> Event:
        """An event of a declared type, addressed by the catalogue's topic rule."""
        return self.catalog.create(event_type, data, event_id=event_id)

    async def publish(self, event: Event, *, origin: str = "bus", source_frame: str | None = None) -> bool:
        """Sequence and deliver `event`. Returns False if its `event_id` was already published.

        `source_frame`: the frame of another protocol `event` was translated from, as JSON text
        (see `Ingress`). Raises `UnknownEventTypeError` for a type the catalogue does not declare."""
        if self._loop is None:
            raise BusClosedError("the event bus is not running")
        topics = self.catalog.delivery_topics(event)
        if len(topics) > 1 and event.topics != topics:
            event = event.addressed(topics)
        rollout = self._rollout(event, origin) if self._rollout is not None else NO_ROLLOUT
        ingress = Ingress(origin, self.catalog.audience(event), rollout, source_frame)
        accepted = await self.backend.append(event, topics, ingress)
        if not accepted:
            if self.metrics:
                self.metrics.bus_duplicates_suppressed.inc()
            return False
        if self.metrics:
            key = (event.type, origin)
            child = self._published.get(key)
            if child is None:  # `labels()` takes a lock and builds a key on every call: look it up once
                child = self._published[key] = self.metrics.events_published.labels(*key)
            self.metrics.batch.add(child)
        return True

    def publish_threadsafe(self, event: Event, *, origin: str = "bus") -> concurrent.futures.Future[bool]:
        """Publish from a thread that is not the bus's event loop (sync routes, worker threads)."""
        loop = self._loop
        if loop is None:
            raise BusClosedError("the event bus is not running")
        return asyncio.run_coroutine_threadsafe(self.publish(event, origin=origin), loop)

    def publish_sync(self, event: Event, *, origin: str = "bus", timeout: float = THREADSAFE_TIMEOUT_S) -> bool:
        """Publish from synchronous code and wait until the event is sequenced.

        From a worker thread this blocks that thread until the bus accepted the event; on the
        loop's own thread (where blocking would deadlock) it schedules the publish and returns.
        """
        loop = self._loop
        if loop is None:
            raise BusClosedError("the event bus is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(self.publish(event, origin=origin))
            return True
        return self.publish_threadsafe(event, origin=origin).result(timeout)

    def _dispatch(self, publication: Publication) -> None:
        event = publication.event
        for sink, interest, every in self._sinks:
            if not every and interest is not None and not interest(event.type, publication.topics):
                continue
            try:
                sink(publication)
            except Exception:
                log.exception("bus sink %r failed on event %s", sink, event.event_id)
        if publication.secondary:  # another part of an event split across shards: handled once, on part 0
            return
        for key in (event.type, None):
            for worker in self._handlers.get(key, {}).values():
                worker.offer(event)

    # -- history ---------------------------------------------------------------------------------

    async def replay(self, topic: str, since: Position) -> list[Publication] | None:
        return await self.backend.replay(topic, since)

    async def position(self, topic: str) -> Position:
        return await self.backend.position(topic)

    async def positions(self, topics: Sequence[str]) -> dict[str, Position]:
        """Where each of `topics` stands now (`BusBackend.positions`): read it *before* reading
        a view's snapshot, hand it to the client, and the client subscribes `since` it."""
        return await self.backend.positions(list(dict.fromkeys(topics)))
