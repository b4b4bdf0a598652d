"""ConnectionManager without sockets: outboxes write into lists."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from examples.chat.declaration import ChatEvent
from tests.support import CHAT
from wsmigrate.metrics import WsMetrics
from wsmigrate.unified import ConnectionManager, Event, EventBus
from wsmigrate.unified.outbox import AsgiOutbox
from wsmigrate.unified.publication import Position


class Sink:
    """Collects what an outbox writes; can be blocked to play a stalled client."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.closed: tuple[int, str] | None = None
        self.closed_event = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Condition()

    async def send(self, text: str) -> None:
        await self.gate.wait()
        async with self.arrived:
            self.frames.append(json.loads(text))
            self.arrived.notify_all()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.closed_event.set()

    async def wait_for(self, count: int) -> list[dict]:
        async with asyncio.timeout(5), self.arrived:
            await self.arrived.wait_for(lambda: len(self.frames) >= count)
        return self.frames


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    bus = EventBus(catalog=CHAT)
    await bus.start()
    yield bus
    await bus.stop()


def connect(manager: ConnectionManager, capacity: int = 100) -> tuple[Sink, object]:
    sink = Sink()
    outbox = AsgiOutbox(sink.send, sink.close, capacity=capacity)
    outbox.start()
    return sink, manager.add(outbox)


def chunk(thread_id: int, content: str) -> Event:
    return CHAT.create(ChatEvent.STREAM_CHUNK, {"thread_id": thread_id, "content": content})


async def test_routes_only_to_subscribers_of_the_topic(bus: EventBus) -> None:
    manager = ConnectionManager(bus)
    a_sink, a = connect(manager)
    b_sink, b = connect(manager)
    await manager.subscribe(a, ["thread:1"])
    await manager.subscribe(b, ["thread:2"])
    await bus.publish(chunk(1, "for a"))
    await bus.publish(chunk(2, "for b"))
    assert [f.get("data", {}).get("content") for f in await a_sink.wait_for(2)] == [None, "for a"]
    assert [f.get("data", {}).get("content") for f in await b_sink.wait_for(2)] == [None, "for b"]


async def test_maps_are_clean_after_10000_connect_disconnect_cycles(bus: EventBus) -> None:
    registry = CollectorRegistry()
    metrics = WsMetrics(registry, event_types=[t.value for t in ChatEvent])
    manager = ConnectionManager(bus, metrics=metrics)
    for i in range(10_000):
        outbox = AsgiOutbox(_noop_send, _noop_close)
        connection = manager.add(outbox)
        await manager.subscribe(connection, [f"thread:{i % 50 + 1}", "agents"])
        if i % 3 == 0:
            manager.unsubscribe(connection, ["agents"])
        manager.remove(connection.client_id)
        await outbox.stop()
    assert manager.connection_count == 0
    assert manager.topic_count == 0
    assert registry.get_sample_value("wsmigrate_connections", {"kind": "unified"}) == 0
    assert registry.get_sample_value("wsmigrate_subscriptions", {"kind": "unified"}) == 0
    assert registry.get_sample_value("wsmigrate_connections_opened_total", {"kind": "unified"}) == 10_000


async def _noop_send(text: str) -> None:
    return None


async def _noop_close(code: int, reason: str) -> None:
    return None


async def test_a_slow_consumer_is_closed_with_1013_and_others_keep_receiving(bus: EventBus) -> None:
    registry = CollectorRegistry()
    metrics = WsMetrics(registry, event_types=[t.value for t in ChatEvent])
    manager = ConnectionManager(bus, metrics=metrics)
    slow_sink, slow = connect(manager, capacity=5)
    fast_sink, fast = connect(manager, capacity=5)
    await manager.subscribe(slow, ["thread:1"])
    await manager.subscribe(fast, ["thread:1"])
    await slow_sink.wait_for(1)
    await fast_sink.wait_for(1)
    slow_sink.gate.clear()  # the slow client stops reading
    for i in range(20):
        await bus.publish(chunk(1, str(i)))
        await fast_sink.wait_for(2 + i)  # the fast one keeps up
    await asyncio.wait_for(slow_sink.closed_event.wait(), 5)  # the close runs as its own task
    assert slow_sink.closed is not None
    assert slow_sink.closed[0] == 1013
    assert "slow consumer" in slow_sink.closed[1]
    assert [f["data"]["content"] for f in fast_sink.frames[1:]] == [str(i) for i in range(20)]
    drops = registry.get_sample_value(
        "wsmigrate_recipient_deliveries_total",
        {"event_type": "stream_chunk", "path": "unified", "outcome": "slow_consumer_drop"},
    )
    assert drops is not None
    assert drops >= 1


async def test_subscribe_with_since_replays_then_continues_without_gap_or_duplicate(bus: EventBus) -> None:
    manager = ConnectionManager(bus)
    for i in range(10):
        await bus.publish(chunk(1, str(i)))
    position = await bus.position("thread:1")
    sink, connection = connect(manager)
    ack = await manager.subscribe(connection, ["thread:1"], {"thread:1": Position(position.epoch, 4)})
    assert ack.positions["thread:1"].recovered is True
    await bus.publish(chunk(1, "live"))
    frames = await sink.wait_for(8)
    assert frames[0]["type"] == "subscribed"
    assert [f["seq"] for f in frames[1:]] == [5, 6, 7, 8, 9, 10, 11]


async def test_since_from_another_epoch_is_not_recovered_and_replays_nothing(bus: EventBus) -> None:
    manager = ConnectionManager(bus)
    await bus.publish(chunk(1, "a"))
    sink, connection = connect(manager)
    ack = await manager.subscribe(connection, ["thread:1"], {"thread:1": Position("other", 0)})
    assert ack.positions["thread:1"].recovered is False
    assert ack.positions["thread:1"].seq == 1
    await bus.publish(chunk(1, "b"))
    frames = await sink.wait_for(2)
    assert [f.get("seq") for f in frames] == [None, 2]


async def test_each_part_of_an_event_a_sharded_bus_split_reaches_a_connection_once(bus: EventBus) -> None:
    """An event of four topics split in two parts of two (two shards): a connection following one
    topic of each part gets both parts, each once; one following both topics of a part gets it once."""
    from wsmigrate.unified.publication import Publication

    manager = ConnectionManager(bus)
    across, across_conn = connect(manager)
    within, within_conn = connect(manager)
    await manager.subscribe(across_conn, ["thread:1", "agent:1"])
    await manager.subscribe(within_conn, ["thread:1", "thread:2"])
    event = CHAT.create(ChatEvent.STREAM_CHUNK, {"thread_id": 1, "content": "x"})
    parts = [
        Publication(event=event.addressed(list(topics)).sequenced(topics[0], 5, "e"), topics=topics,
                    seqs=dict.fromkeys(topics, 5), epochs=dict.fromkeys(topics, "e"), part=index)
        for index, topics in enumerate([("thread:1", "thread:2"), ("agent:1", "agent:2")])
    ]
    for publication in parts:
        manager.on_publication(publication)
    frames = (await across.wait_for(3))[1:]
    assert sorted(f["topic"] for f in frames) == ["agent:1", "thread:1"]
    assert [p.once_key for p in parts] == [f"{event.event_id}#0", f"{event.event_id}#1"]
    for publication in parts:  # the same parts again (a second delivery): nothing more
        manager.on_publication(publication)
    manager.on_publication(Publication(event=event.sequenced("thread:1", 6, "e"), topics=("thread:1",),
                                       seqs={"thread:1": 6}, epochs={"thread:1": "e"}))
    assert [f.get("seq") for f in (await across.wait_for(4))[1:]] == [5, 5, 6]
    assert [f["topic"] for f in (await within.wait_for(3))[1:]] == ["thread:1", "thread:1"]  # part 0 once


async def test_a_replay_is_counted_as_delivered_but_not_timed_as_a_delivery_latency() -> None:
    """A replayed event's age since ingress is not a delivery latency: a reconnect storm replaying
    minutes-old events would fill the histogram's top buckets. Live and held-back events are timed."""
    metrics = WsMetrics(CollectorRegistry(), event_types=[t.value for t in ChatEvent])
    bus = EventBus(catalog=CHAT, metrics=metrics)
    await bus.start()
    try:
        manager = ConnectionManager(bus, metrics=metrics)

        def timed() -> float:
            metrics.batch.flush()
            return metrics.registry.get_sample_value("wsmigrate_delivery_latency_seconds_count",
                                                     {"path": "unified"}) or 0.0

        def delivered() -> float:
            metrics.batch.flush()
            return metrics.registry.get_sample_value(
                "wsmigrate_recipient_deliveries_total",
                {"event_type": "stream_chunk", "path": "unified", "outcome": "sent"}) or 0.0

        for i in range(5):
            await bus.publish(chunk(1, str(i)))
        epoch = (await bus.position("thread:1")).epoch
        sink, connection = connect(manager)
        await manager.subscribe(connection, ["thread:1"], {"thread:1": Position(epoch, 0)})
        await sink.wait_for(6)  # the ack and five replayed events
        assert (delivered(), timed()) == (5, 0)
        await bus.publish(chunk(1, "live"))
        await sink.wait_for(7)
        assert (delivered(), timed()) == (6, 1)
    finally:
        await bus.stop()
