from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from examples.chat.declaration import ChatEvent
from tests.contract.helpers import Sink
from tests.support import CHAT
from wsmigrate.metrics import WsMetrics
from wsmigrate.unified import ConnectionManager, Event, EventBus, Publication
from wsmigrate.unified.backend import MemoryBackend
from wsmigrate.unified.errors import BusClosedError
from wsmigrate.unified.outbox import AsgiOutbox


def chunk(thread_id: int, text: str) -> Event:
    return CHAT.create(ChatEvent.STREAM_CHUNK, {"thread_id": thread_id, "content": text})


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    metrics = WsMetrics(CollectorRegistry(), event_types=[t.value for t in ChatEvent])
    bus = EventBus(catalog=CHAT, metrics=metrics, handler_queue_size=5)
    await bus.start()
    yield bus
    await bus.stop()


async def test_handlers_see_events_of_their_type_in_publish_order(bus: EventBus) -> None:
    seen: list[str] = []
    done = asyncio.Event()

    async def handler(event: Event) -> None:
        seen.append(event.data["content"])
        if len(seen) == 3:
            done.set()

    bus.subscribe(ChatEvent.STREAM_CHUNK, handler)
    for text in "abc":
        await bus.publish(chunk(1, text))
    await bus.publish(CHAT.create(ChatEvent.STREAM_END, {"thread_id": 1}))
    await asyncio.wait_for(done.wait(), 5)
    assert seen == ["a", "b", "c"]


async def test_a_failing_handler_is_isolated_and_logged(bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []
    broke = asyncio.Event()
    done = asyncio.Event()

    async def broken(event: Event) -> None:
        broke.set()
        raise RuntimeError("boom")

    def fine(event: Event) -> None:
        got.append(event.event_id)
        if len(got) == 2:
            done.set()

    bus.subscribe(None, broken)
    bus.subscribe(ChatEvent.STREAM_CHUNK, fine)
    first, second = chunk(1, "x"), chunk(1, "y")
    await bus.publish(first)
    await asyncio.wait_for(broke.wait(), 5)  # the handler raised in the same step it set the flag
    assert "boom" in caplog.text
    assert bus.metrics.bus_handler_events.labels("error")._value.get() == 1
    await bus.publish(second)
    await asyncio.wait_for(done.wait(), 5)
    assert got == [first.event_id, second.event_id]


async def test_a_slow_handler_never_blocks_publish_and_overflow_is_counted(bus: EventBus) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def stuck(event: Event) -> None:
        entered.set()
        await release.wait()

    bus.subscribe(ChatEvent.STREAM_CHUNK, stuck)
    await bus.publish(chunk(1, "first"))
    await asyncio.wait_for(entered.wait(), 5)
    async with asyncio.timeout(2):
        for i in range(49):
            await bus.publish(chunk(1, str(i)))
    dropped = bus.metrics.bus_handler_events.labels("dropped")._value.get()
    assert dropped == 49 - 5  # one is in the handler, five fit the queue
    release.set()


async def test_unsubscribe_stops_a_handler(bus: EventBus) -> None:
    seen: list[Event] = []
    bus.subscribe(ChatEvent.STREAM_CHUNK, seen.append)
    bus.unsubscribe(ChatEvent.STREAM_CHUNK, seen.append)
    other = asyncio.Event()
    bus.subscribe(ChatEvent.STREAM_CHUNK, lambda event: other.set())
    assert await bus.publish(chunk(1, "x"))
    await asyncio.wait_for(other.wait(), 5)  # a later subscriber got it, so the removed one would have too
    assert seen == []


async def test_sinks_get_sequenced_publications_with_gapless_per_topic_seq(bus: EventBus) -> None:
    publications: list[Publication] = []
    bus.attach(publications.append)
    for i in range(5):
        await bus.publish(chunk(1 + i % 2, str(i)))
    await bus.publish(CHAT.create(ChatEvent.THREAD_UPDATED, {"id": 1, "agent_id": 9}))
    assert [p.seqs["thread:1"] for p in publications if "thread:1" in p.seqs] == [1, 2, 3, 4]
    assert [p.seqs["thread:2"] for p in publications if "thread:2" in p.seqs] == [1, 2]
    last = publications[-1]
    assert last.topics == ("thread:1", "agent:9")
    assert last.seqs == {"thread:1": 4, "agent:9": 1}
    assert last.event.seq == 4


async def test_republishing_an_event_id_is_suppressed(bus: EventBus) -> None:
    publications: list[Publication] = []
    bus.attach(publications.append)
    event = chunk(1, "once")
    assert await bus.publish(event)
    assert not await bus.publish(event)
    assert len(publications) == 1
    assert bus.metrics.bus_duplicates_suppressed._value.get() == 1


async def test_publish_threadsafe_from_a_worker_thread(bus: EventBus) -> None:
    publications: list[Publication] = []
    bus.attach(publications.append)
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.append(bus.publish_sync(chunk(3, "t"))))
    worker.start()
    await asyncio.to_thread(worker.join, 5)
    assert results == [True]
    assert [p.event.data["content"] for p in publications] == ["t"]


async def test_publish_on_a_stopped_bus_raises() -> None:
    with pytest.raises(BusClosedError):
        await EventBus(catalog=CHAT).publish(chunk(1, "x"))


async def test_publications_encode_each_topic_frame_once(bus: EventBus) -> None:
    publications: list[Publication] = []
    bus.attach(publications.append)
    await bus.publish(CHAT.create(ChatEvent.AGENT_UPDATED, {"id": 3, "name": "n"}))
    pub = publications[0]
    assert pub.frame("agents") is pub.frame("agents")
    assert '"topic":"agents"' in pub.frame("agents")
    assert CHAT.delivery_topics(pub.event) == ["agent:3", "agents"]


async def test_wants_asks_handlers_and_every_sinks_interest(bus: EventBus) -> None:
    followed: set[str] = set()
    bus.attach(lambda publication: None, interest=lambda _type, topics: any(t in followed for t in topics))
    assert not bus.wants(ChatEvent.STREAM_CHUNK, ["thread:1"])
    followed.add("thread:1")
    assert bus.wants(ChatEvent.STREAM_CHUNK, ["thread:1"])
    assert not bus.wants(ChatEvent.STREAM_CHUNK, ["thread:2"])

    async def handler(event: Event) -> None:
        pass

    bus.subscribe(ChatEvent.THREAD_DELETED, handler)  # a handler needs every event of its type
    assert bus.wants(ChatEvent.THREAD_DELETED, ["agent:9"])
    assert not bus.wants(ChatEvent.STREAM_CHUNK, ["thread:2"])
    bus.unsubscribe(ChatEvent.THREAD_DELETED, handler)
    assert not bus.wants(ChatEvent.THREAD_DELETED, ["agent:9"])
    bus.attach(lambda publication: None)  # a sink without a declared interest needs everything
    assert bus.wants(ChatEvent.STREAM_CHUNK, ["thread:2"])


async def test_the_manager_is_interested_in_the_topics_its_connections_follow() -> None:
    bus = EventBus(catalog=CHAT)
    manager = ConnectionManager(bus)
    assert not manager.follows_any(ChatEvent.STREAM_CHUNK, ["thread:1"])
    sink = Sink()
    connection = manager.add(AsgiOutbox(sink.send, sink.close, capacity=10))
    await bus.start()
    try:
        await manager.subscribe(connection, ["thread:1"])
        assert manager.follows_any(ChatEvent.STREAM_CHUNK, ["agents", "thread:1"])
        assert bus.wants(ChatEvent.STREAM_CHUNK, ["thread:1"])
        manager.unsubscribe(connection, ["thread:1"])
        assert not bus.wants(ChatEvent.STREAM_CHUNK, ["thread:1"])
    finally:
        await bus.stop()


async def test_a_sink_with_an_interest_gets_only_what_it_asked_for(bus: EventBus) -> None:
    mine: list[str] = []
    everything: list[str] = []
    bus.attach(lambda p: mine.append(p.topics[0]), interest=lambda _type, topics: "thread:1" in topics)
    bus.attach(lambda p: everything.append(p.topics[0]), interest=lambda _type, topics: "thread:1" in topics,
               every_publication=True)
    for thread_id in (1, 2, 1):
        await bus.publish(chunk(thread_id, "x"))
    assert mine == ["thread:1", "thread:1"]
    assert everything == ["thread:1", "thread:2", "thread:1"]  # its interest only decides what is taken in


class RecordingBackend(MemoryBackend):
    """What a following backend is told (`BusBackend.follow`), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, object]] = []

    def follow(self, topic: str) -> None:
        self.calls.append(("follow", topic))

    def unfollow(self, topic: str) -> None:
        self.calls.append(("unfollow", topic))

    def follow_types(self, event_types: frozenset[str]) -> None:
        self.calls.append(("types", event_types))


async def test_the_backend_follows_a_topic_while_any_connection_does_and_never_in_between() -> None:
    backend = RecordingBackend()
    bus = EventBus(backend, catalog=CHAT)
    await bus.start()
    manager = ConnectionManager(bus)
    backend.calls.clear()
    first, second = (manager.add(AsgiOutbox(Sink().send, Sink().close)) for _ in range(2))
    await manager.subscribe(first, ["thread:1"])  # buffering, then live in one step: followed once
    await manager.subscribe(second, ["thread:1"])
    assert backend.calls == [("follow", "thread:1")]
    manager.remove(first.client_id)
    assert backend.calls == [("follow", "thread:1")]
    manager.unsubscribe(second, ["thread:1"])
    assert backend.calls == [("follow", "thread:1"), ("unfollow", "thread:1")]
    assert bus.followed_topics == frozenset()
    await bus.stop()


async def test_followed_types_are_those_sinks_and_handlers_declare_and_all_when_one_cannot() -> None:
    backend = RecordingBackend()
    bus = EventBus(backend, catalog=CHAT)
    manager = ConnectionManager(bus)  # followed topics only: no type
    assert bus.followed_types() == frozenset()
    assert manager.connection_count == 0
    bus.attach(lambda _p: None, event_types=[ChatEvent.THREAD_DELETED])
    bus.subscribe(ChatEvent.AGENT_UPDATED, lambda _e: None)
    assert backend.calls[-1] == ("types", {ChatEvent.THREAD_DELETED, ChatEvent.AGENT_UPDATED})
    bus.subscribe(None, lambda _e: None)  # every type
    assert backend.calls[-1] == ("types", {*CHAT.names, *CHAT.internal_names})
