"""Workers that follow topics (`?delivery=topics`, `unified.redis_follower`) against a real Redis.

The contract tests (`tests/contract`) run the whole `BusBackend` contract on such workers; these
pin what is particular to following: a worker takes in only what it follows, stops when nothing
follows a topic any more, needs typed sinks declared, receives an entry of several followed
channels once, and reports every way pub/sub can lose a push instead of losing it silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from examples.chat.declaration import ChatEvent
from tests.contract.helpers import INGRESS, Delivered, Sink, append, chunk, thread_updated
from tests.redis_server import RedisServer
from tests.support import CHAT
from wsmigrate.metrics import WsMetrics
from wsmigrate.unified import Connection, ConnectionManager, EventBus, Publication
from wsmigrate.unified.outbox import AsgiOutbox
from wsmigrate.unified.redis_backend import RedisBackend
from wsmigrate.unified.redis_follower import TopicFollower
from wsmigrate.unified.redis_scripts import PUSH_SEPARATOR


class Worker:
    """A worker that follows topics: its bus, manager, what its bus took in, and its discontinuities."""

    def __init__(self, url: str, prefix: str) -> None:
        self.discontinuities: list[str] = []
        self.discontinued = asyncio.Event()
        self.metrics = WsMetrics(CollectorRegistry(), event_types=list(CHAT.names))
        self.backend = RedisBackend(url + "?delivery=topics", prefix=prefix, on_discontinuity=self._discontinuity,
                                    heartbeat_interval_s=0.2, stale_after_s=1.0, metrics=self.metrics)
        self.bus = EventBus(self.backend, catalog=CHAT)
        self.manager = ConnectionManager(self.bus)
        self.taken = Delivered()
        self.bus.attach(self.taken, followed_topics_only=True)

    def _discontinuity(self, reason: str) -> None:
        self.discontinuities.append(reason)
        self.discontinued.set()

    def connect(self) -> tuple[Sink, Connection]:
        sink = Sink()
        outbox = AsgiOutbox(sink.send, sink.close)
        outbox.start()
        return sink, self.manager.add(outbox)


@pytest.fixture
async def workers(redis_url: str, redis_prefix: str) -> AsyncIterator[Callable[[], Worker]]:
    made: list[Worker] = []

    def make() -> Worker:
        made.append(Worker(redis_url, redis_prefix))
        return made[-1]

    yield make
    for worker in made:
        await worker.bus.stop()


@pytest.fixture
async def publisher(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBackend]:
    """Another worker of the same bus, reading the global stream, that only publishes."""
    backend = RedisBackend(redis_url, prefix=redis_prefix)
    await backend.start(Delivered())
    yield backend
    await backend.stop()


async def test_a_worker_takes_in_the_topics_it_follows_and_stops_when_nothing_follows_them(
    workers: Callable[[], Worker], publisher: RedisBackend
) -> None:
    worker = workers()
    await worker.bus.start()
    sink, connection = worker.connect()
    await worker.manager.subscribe(connection, ["thread:1"])
    for i in range(20):
        assert await append(publisher, chunk(2, f"not followed {i}"))
    assert await append(publisher, chunk(1, "followed"))
    await sink.wait_for(2)  # the ack, then the one event of thread:1
    # pushes reach a connection in publish order: had thread:2 been pushed, it would be here by now
    assert [p.topics for p in worker.taken.publications] == [("thread:1",)]

    worker.manager.unsubscribe(connection, ["thread:1"])
    await worker.manager.subscribe(connection, ["thread:3"])  # confirmed after thread:1's unsubscribe
    for i in range(5):
        assert await append(publisher, chunk(1, f"no longer followed {i}"))
    assert await append(publisher, chunk(3, "marker"))
    await sink.wait_for(4)
    assert [p.topics for p in worker.taken.publications] == [("thread:1",), ("thread:3",)]
    assert worker.bus.followed_topics == {"thread:3"}
    assert worker.discontinuities == []


async def test_typed_sinks_and_handlers_get_their_types_from_every_topic(
    workers: Callable[[], Worker], publisher: RedisBackend
) -> None:
    worker = workers()
    deletions: list[Publication] = []
    worker.bus.attach(deletions.append, interest=lambda t, _: t == ChatEvent.THREAD_DELETED,
                      event_types=[ChatEvent.THREAD_DELETED])
    handled: asyncio.Queue[str] = asyncio.Queue()
    worker.bus.subscribe(ChatEvent.AGENT_UPDATED, lambda event: handled.put_nowait(event.event_id))
    await worker.bus.start()
    assert worker.bus.followed_types() == {ChatEvent.THREAD_DELETED, ChatEvent.AGENT_UPDATED}

    deleted = CHAT.create(ChatEvent.THREAD_DELETED, {"id": 4, "agent_id": 2})
    updated = CHAT.create(ChatEvent.AGENT_UPDATED, {"id": 2, "name": "a", "status": "idle"})
    for event in (chunk(4, "not wanted"), deleted, updated):
        assert await append(publisher, event)
    assert await asyncio.wait_for(handled.get(), 10) == updated.event_id
    assert [p.event.event_id for p in deletions] == [deleted.event_id]
    assert [p.event.type for p in worker.taken.publications] == [ChatEvent.THREAD_DELETED, ChatEvent.AGENT_UPDATED]

    # a sink that does not say what it needs makes the worker take in every declared type
    worker.bus.attach(lambda _p: None, interest=lambda _t, _topics: True)
    assert worker.bus.followed_types() == {*CHAT.names, *CHAT.internal_names}


async def test_an_entry_on_several_followed_channels_is_taken_in_once(
    workers: Callable[[], Worker], publisher: RedisBackend
) -> None:
    worker = workers()
    handled: asyncio.Queue[str] = asyncio.Queue()
    worker.bus.subscribe(ChatEvent.THREAD_UPDATED, lambda event: handled.put_nowait(event.event_id))
    await worker.bus.start()
    sink, connection = worker.connect()
    await worker.manager.subscribe(connection, ["thread:5", "agent:6"])
    event = thread_updated(5, 6)  # on thread:5 and agent:6, and of a type followed: three pushes
    assert await append(publisher, event)
    assert await asyncio.wait_for(handled.get(), 10) == event.event_id
    assert worker.taken.ids == [event.event_id]
    assert worker.backend.followers[0].copies == 2
    assert len([f for f in await sink.wait_for(2) if f.get("event_id") == event.event_id]) == 1


async def following(workers: Callable[[], Worker], *topics: str) -> tuple[Worker, Sink, TopicFollower]:
    """A started worker with one socket subscribed to `topics`, and its (one shard's) follower."""
    worker = workers()
    await worker.bus.start()
    sink, connection = worker.connect()
    await worker.manager.subscribe(connection, list(topics))
    return worker, sink, worker.backend.followers[0]


async def kill_reader(redis_url: str, worker: Worker) -> None:
    """Close the follower's pub/sub connection from Redis's side (what a proxy or a restart does)."""
    async with Redis.from_url(redis_url, decode_responses=True) as admin:
        clients = [c for c in await admin.client_list() if c["name"] == worker.backend.reader_client_name]
        assert len(clients) == 1
        await admin.client_kill_filter(_id=clients[0]["id"])


def hold_reconnect(follower: TopicFollower, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The follower reconnects only once the returned event is set: what is published before that
    is certainly published while it follows nothing."""
    gate = asyncio.Event()
    connect = follower._connect

    async def gated() -> None:
        await gate.wait()
        await connect()

    monkeypatch.setattr(follower, "_connect", gated)
    return gate


async def test_a_lost_connection_resumes_from_the_stream_with_nothing_lost_and_no_socket_closed(
    workers: Callable[[], Worker], publisher: RedisBackend, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker, sink, follower = await following(workers, "thread:8", "thread:18")
    assert await append(publisher, chunk(8, "before"))
    await sink.wait_for(2)  # the subscribe answer and the event
    gate = hold_reconnect(follower, monkeypatch)
    await kill_reader(redis_url, worker)
    for i in range(3):  # pushed to nobody: the follower's connection is gone
        assert await append(publisher, chunk(8, f"while away {i}"))
    assert await append(publisher, chunk(18, "away, on the other topic"))
    assert await append(publisher, chunk(28, "a topic nobody here follows"))
    gate.set()
    await sink.wait_for(6)  # what was published while away came back before anything newer
    assert await append(publisher, chunk(8, "after the reconnect"))
    frames = await sink.wait_for(7)
    assert [f["data"]["content"] for f in frames[1:]] == [
        "before", "while away 0", "while away 1", "while away 2", "away, on the other topic", "after the reconnect"]
    assert [f["seq"] for f in frames[1:] if f["topic"] == "thread:8"] == [1, 2, 3, 4, 5]
    assert worker.discontinuities == []
    assert follower.reconnects == 1
    assert follower.resumed == 4  # the unfollowed topic's entry was skipped
    assert worker.metrics.registry.get_sample_value("wsmigrate_bus_resumed_entries_total") == 4
    await follower.wait_until_healthy(True, 5)


async def test_a_topic_followed_since_the_last_delivery_is_not_replayed_twice_but_reported(
    workers: Callable[[], Worker], publisher: RedisBackend, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """thread:2's first event was published before anyone here followed it (a subscriber gets it
    from its replay); the connection drops before any push came after thread:2's follow. Reading
    the stream back cannot tell that event from one published while away: it must not deliver it
    again, so it reports a gap."""
    worker, sink, follower = await following(workers, "thread:1")
    assert await append(publisher, chunk(1, "delivered"))
    await sink.wait_for(2)
    assert await append(publisher, chunk(2, "before the follow"))
    other, connection = worker.connect()
    await worker.manager.subscribe(connection, ["thread:2"])
    await other.wait_for(1)  # its subscribe answered: thread:2 is followed, its subscription confirmed
    gate = hold_reconnect(follower, monkeypatch)
    await kill_reader(redis_url, worker)
    assert await append(publisher, chunk(2, "while away"))
    gate.set()
    await asyncio.wait_for(worker.discontinued.wait(), 10)
    assert worker.discontinuities == ["gap"]
    assert [p.event.data["content"] for p in worker.taken.publications if "thread:2" in p.topics] == []


async def test_a_lost_connection_before_anything_was_delivered_is_reported(
    workers: Callable[[], Worker], publisher: RedisBackend, redis_url: str
) -> None:
    """Nothing delivered yet: no entry to resume from, so what was published meanwhile cannot be
    told apart from what came before the follow; it is a gap, and clients resync."""
    worker, sink, follower = await following(workers, "thread:8")
    await kill_reader(redis_url, worker)
    await asyncio.wait_for(worker.discontinued.wait(), 10)
    assert worker.discontinuities == ["gap"]
    assert follower.reconnects == 1
    await follower.confirmed("thread:8", 5)
    assert await append(publisher, chunk(8, "after the reconnect"))
    frames = await sink.wait_for(2)
    assert frames[-1]["data"]["content"] == "after the reconnect"
    await follower.wait_until_healthy(True, 5)


async def test_a_stream_trimmed_past_the_follower_while_it_was_away_is_reported_as_a_gap(
    workers: Callable[[], Worker], publisher: RedisBackend, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker, sink, follower = await following(workers, "thread:7")
    assert await append(publisher, chunk(7, "before"))
    await sink.wait_for(2)
    gate = hold_reconnect(follower, monkeypatch)
    await kill_reader(redis_url, worker)
    assert await append(publisher, chunk(7, "while away"))
    async with Redis.from_url(redis_url, decode_responses=True) as admin:
        await admin.xtrim(worker.backend.keys.events, maxlen=0)  # the entry it stood at is gone
    gate.set()
    await asyncio.wait_for(worker.discontinued.wait(), 10)
    assert worker.discontinuities == ["gap"]
    assert follower.resumed == 0
    assert worker.metrics.registry.get_sample_value("wsmigrate_bus_resumed_entries_total") == 0
    await follower.confirmed("thread:7", 5)
    assert await append(publisher, chunk(7, "after"))
    frames = await sink.wait_for(3)
    assert frames[-1]["data"]["content"] == "after"


async def test_a_followed_topic_whose_seq_jumps_is_reported_as_a_gap(
    workers: Callable[[], Worker], publisher: RedisBackend, redis_url: str
) -> None:
    worker = workers()
    await worker.bus.start()
    sink, connection = worker.connect()
    await worker.manager.subscribe(connection, ["thread:9"])
    assert await append(publisher, chunk(9, "one"))
    await sink.wait_for(2)
    assert worker.discontinuities == []
    # a push that skips seq 2..4 (as if Redis had dropped some): the follower must notice
    follower, position = worker.backend.followers[0], await worker.bus.position("thread:9")
    forged = chunk(9, "five").model_dump_json()
    push = PUSH_SEPARATOR.join([
        "99999999999999-0", ChatEvent.STREAM_CHUNK, '["thread:9"]', "[5]", f'["{position.epoch}"]',
        str(follower._incarnation), "0", "", INGRESS.to_json(), forged])
    async with Redis.from_url(redis_url, decode_responses=True) as admin:
        assert await admin.publish(worker.backend.keys.topic_channel("thread:9"), push) == 1
    await asyncio.wait_for(worker.discontinued.wait(), 10)
    assert worker.discontinuities == ["gap"]


async def test_a_hung_redis_makes_the_follower_unhealthy_and_it_recovers(private_redis: RedisServer) -> None:
    metrics = WsMetrics(CollectorRegistry(), event_types=list(CHAT.names))
    delivered = Delivered()
    backend = RedisBackend(private_redis.url + "?delivery=topics", prefix="hung", metrics=metrics,
                           heartbeat_interval_s=0.2, stale_after_s=1.0)
    backend.follow("thread:4")
    await backend.start(delivered)
    follower = backend.followers[0]
    try:
        assert backend.healthy()
        assert metrics.bus_listener_up._value.get() == 1
        # its topic and its heartbeats (no event type: nothing here asked for one)
        assert metrics.registry.get_sample_value("wsmigrate_bus_followed_channels") == 2
        private_redis.pause()
        try:
            await follower.wait_until_healthy(False, timeout=10)
            assert metrics.bus_listener_up._value.get() == 0
            assert not backend.healthy()
        finally:
            private_redis.resume()
        await follower.wait_until_healthy(True, timeout=10)
        assert metrics.bus_listener_up._value.get() == 1
        assert follower.discontinuities == 0  # the connection held: nothing pushed was lost
        after = chunk(4, "after the freeze")
        assert await append(backend, after)
        await delivered.wait_for(1)
        assert delivered.ids == [after.event_id]
    finally:
        await backend.stop()
    assert metrics.registry.get_sample_value("wsmigrate_bus_followed_channels") == 0


async def test_a_redis_that_lost_its_data_is_reported_as_a_reset(private_redis: RedisServer) -> None:
    resets: asyncio.Queue[str] = asyncio.Queue()
    delivered = Delivered()
    backend = RedisBackend(private_redis.url + "?delivery=topics", prefix="reset", on_discontinuity=resets.put_nowait,
                           heartbeat_interval_s=0.2, stale_after_s=1.0)
    backend.follow("thread:3")
    await backend.start(delivered)
    try:
        assert await append(backend, chunk(3, "before"))
        await delivered.wait_for(1)
        old = await backend.position("thread:3")
        async with Redis.from_url(private_redis.url) as admin:
            await admin.flushall()  # the connection stays: only the data's new incarnation tells
        assert await asyncio.wait_for(resets.get(), 10) == "reset"
        assert await append(backend, chunk(3, "after"))
        await delivered.wait_for(2)
        new = await backend.position("thread:3")
        assert (new.epoch, new.seq) != (old.epoch, old.seq)
        assert delivered.publications[-1].seqs["thread:3"] == 1  # numbered afresh, in a new epoch
    finally:
        await backend.stop()
