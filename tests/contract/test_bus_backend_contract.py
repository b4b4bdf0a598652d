"""The `BusBackend` contract, run against every implementation (in-memory and Redis).

Whatever the transport, the `EventBus` and `ConnectionManager` rely on the same promises: gapless
per-topic numbering, one delivery per event id, delivery in sequencing order, a position that never
runs ahead of what was delivered, and all-or-nothing replay within the history bounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.contract.helpers import INGRESS, Delivered, Sink, agent_updated, append, chunk, thread_updated
from tests.support import CHAT
from wsmigrate.unified import Connection, ConnectionManager, EventBus, Position
from wsmigrate.unified.backend import BusBackend, MemoryBackend
from wsmigrate.unified.history import TopicHistory
from wsmigrate.unified.outbox import AsgiOutbox
from wsmigrate.unified.redis_backend import RedisBackend


@dataclass
class MakeBackend:
    """Builds started backends of one kind; `sharded`: order is promised per topic only, and an
    event of several topics may arrive as one publication per shard."""

    build: Callable[..., Awaitable[tuple[BusBackend, Delivered]]]
    sharded: bool

    async def __call__(self, *, history_size: int = 300, history_ttl_s: float = 300.0,
                       start: bool = True) -> tuple[BusBackend, Delivered]:
        return await self.build(history_size=history_size, history_ttl_s=history_ttl_s, start=start)


@pytest.fixture(params=["memory", "redis", "redis-sharded", "redis-cluster", "redis-topics", "redis-cluster-topics"])
async def make_backend(request: pytest.FixtureRequest) -> AsyncIterator[MakeBackend]:
    """Build backends of the parametrised kind with given history bounds; started unless asked not to.

    `redis-sharded`: four shards on one Redis; `redis-cluster`: six shards on a three-node Redis
    Cluster (`unified.shard_map`); `-topics`: workers that follow (`?delivery=topics`), here every
    declared event type, so that they take in everything as the contract expects."""
    started: list[BusBackend] = []
    # set up before (so torn down after) the backends using them
    if request.param in ("redis", "redis-sharded", "redis-topics"):
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        if request.param == "redis-sharded":
            url += "?shards=4"
        if request.param == "redis-topics":
            url += "?delivery=topics"
    elif request.param in ("redis-cluster", "redis-cluster-topics"):
        url = request.getfixturevalue("redis_cluster").url + "?cluster=true&shards=6"
        prefix = request.getfixturevalue("cluster_prefix")
        if request.param == "redis-cluster-topics":
            url += "&delivery=topics"

    async def make(
        *, history_size: int = 300, history_ttl_s: float = 300.0, start: bool = True
    ) -> tuple[BusBackend, Delivered]:
        backend: BusBackend
        if request.param == "memory":
            backend = MemoryBackend(TopicHistory(size=history_size, ttl_s=history_ttl_s))
        else:
            backend = RedisBackend(url, prefix=prefix, history_size=history_size, history_ttl_s=history_ttl_s)
            backend.follow_types(frozenset((*CHAT.names, *CHAT.internal_names)))
        delivered = Delivered()
        if start:
            await backend.start(delivered)
            started.append(backend)
        return backend, delivered

    yield MakeBackend(make, sharded=request.param in ("redis-sharded", "redis-cluster", "redis-cluster-topics"))
    for backend in started:
        await backend.stop()



async def test_each_topic_is_numbered_without_gaps_and_multi_topic_events_on_each(make_backend: MakeBackend) -> None:
    backend, delivered = await make_backend()
    events = [chunk(1, "a"), chunk(2, "b"), thread_updated(1, 9), chunk(1, "c"), agent_updated(9)]
    for event in events:
        assert await append(backend, event)
    publications = await delivered.wait_for_topics(7)  # thread_updated: 2 topics, agent_updated: 2

    if not make_backend.sharded:
        assert delivered.ids == [e.event_id for e in events]
    for topic in ("thread:1", "thread:2", "agent:9", "agents"):  # per topic, always publish order
        assert delivered.topic_ids(topic) == [e.event_id for e in events if topic in CHAT.delivery_topics(e)]
    assert delivered.seqs("thread:1") == [1, 2, 3]
    assert delivered.seqs("thread:2") == [1]
    assert delivered.seqs("agent:9") == [1, 2]
    assert delivered.seqs("agents") == [1]
    parts = [p for p in publications if p.event.event_id == events[2].event_id]
    assert {t for p in parts for t in p.topics} == {"thread:1", "agent:9"}
    assert sum(len(p.topics) for p in parts) == 2  # each topic numbered it once
    multi = next(p for p in parts if "thread:1" in p.topics)
    if len(parts) == 1:
        assert multi.topics == ("thread:1", "agent:9")
        assert multi.part is None
    else:  # split across shards: part 0 holds the primary topic
        assert sorted(p.part for p in parts) == [0, 1]
        assert multi.part == 0
        assert not multi.secondary
    assert (multi.event.topic, multi.event.seq, multi.event.epoch) == ("thread:1", 2, multi.epochs["thread:1"])
    assert all(p.ingress == INGRESS for p in parts)
    for topic in ("thread:1", "agent:9"):
        epochs = {p.epochs[topic] for p in publications if topic in p.epochs}
        assert epochs == {(await backend.position(topic)).epoch}
    assert await backend.position("thread:1") == Position(multi.epochs["thread:1"], 3)


async def test_a_republished_event_id_is_accepted_and_delivered_once(make_backend: MakeBackend) -> None:
    backend, delivered = await make_backend()
    event, later = chunk(1, "once"), chunk(1, "later")
    assert await append(backend, event)
    assert not await append(backend, event)
    assert await append(backend, later)
    await delivered.wait_for(2)
    assert delivered.ids == [event.event_id, later.event_id]
    assert (await backend.position("thread:1")).seq == 2


async def test_concurrent_publishers_are_delivered_once_each_in_seq_order(make_backend: MakeBackend) -> None:
    backend, delivered = await make_backend()

    async def publisher(n: int) -> list[str]:
        events = [chunk(1 + (n + i) % 3, f"{n}-{i}") for i in range(25)]
        for event in events:
            assert await append(backend, event)
            await asyncio.sleep(0)  # let the other publishers interleave
        return [e.event_id for e in events]

    published = await asyncio.gather(*(publisher(n) for n in range(4)))
    await delivered.wait_for(100)
    assert sorted(delivered.ids) == sorted(i for ids in published for i in ids)
    for ids in published:  # each publisher's events arrive in the order it published them
        mine = set(ids)
        if not make_backend.sharded:
            assert [i for i in delivered.ids if i in mine] == ids
        for topic in ("thread:1", "thread:2", "thread:3"):  # sharded: within each topic
            assert [i for i in delivered.topic_ids(topic) if i in mine] == \
                [i for i in ids if i in set(delivered.topic_ids(topic))]
    for topic in ("thread:1", "thread:2", "thread:3"):
        seqs = delivered.seqs(topic)
        assert seqs == list(range(1, len(seqs) + 1))


async def test_position_never_runs_ahead_of_delivery(make_backend: MakeBackend) -> None:
    backend, delivered = await make_backend()
    untouched = await backend.position("thread:5")
    assert untouched.seq == 0
    assert await backend.position("thread:5") == untouched  # the epoch is stable once handed out

    async def publisher(n: int) -> None:
        for i in range(100):
            assert await append(backend, chunk(1, f"{n}-{i}"))

    publishing = asyncio.gather(*(publisher(n) for n in range(3)))
    try:
        while not publishing.done():
            position = await backend.position("thread:1")
            # No await between the answer and this check: everything up to the position is delivered.
            assert (delivered.seqs("thread:1") or [0])[-1] >= position.seq
            await asyncio.sleep(0)  # the in-memory backend never yields by itself
        await publishing
    finally:
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
    assert (await backend.position("thread:1")).seq == 300
    assert delivered.seqs("thread:1")[-1] == 300


async def test_positions_read_many_topics_at_once_and_replay_exactly_what_followed(make_backend: MakeBackend) -> None:
    backend, delivered = await make_backend()
    assert await backend.positions([]) == {}
    fresh = await backend.positions(["thread:8", "agent:8"])
    assert {p.seq for p in fresh.values()} == {0}
    for i in range(3):
        assert await append(backend, chunk(8, str(i)))
    assert await append(backend, thread_updated(8, 8))  # on thread:8 and agent:8
    await delivered.wait_for_topics(5)

    # The epoch handed out before any event is the one the events were numbered in.
    read = await backend.positions(["thread:8", "agent:8", "thread:9"])
    assert read["thread:8"] == Position(fresh["thread:8"].epoch, 4)
    assert read["agent:8"] == Position(fresh["agent:8"].epoch, 1)
    assert read["thread:9"].seq == 0
    assert read["thread:8"] == await backend.position("thread:8")

    later = [chunk(8, "after"), thread_updated(8, 8)]
    for event in later:
        assert await append(backend, event)
    await delivered.wait_for_topics(8)
    replayed = await backend.replay("thread:8", read["thread:8"])
    assert replayed is not None
    assert [p.event.event_id for p in replayed] == [e.event_id for e in later]
    replayed_agent = await backend.replay("agent:8", read["agent:8"])
    assert replayed_agent is not None
    assert [p.event.event_id for p in replayed_agent] == [later[1].event_id]


async def test_replay_is_all_or_nothing_within_the_size_bound(make_backend: MakeBackend) -> None:
    backend, delivered = await make_backend(history_size=5)
    for i in range(8):
        assert await append(backend, chunk(1, str(i)))
    await delivered.wait_for(8)
    epoch = (await backend.position("thread:1")).epoch

    replayed = await backend.replay("thread:1", Position(epoch, 3))
    assert replayed is not None
    assert [p.seqs["thread:1"] for p in replayed] == [4, 5, 6, 7, 8]
    assert [p.event.event_id for p in replayed] == delivered.ids[3:]
    assert [p.event.seq for p in replayed] == [4, 5, 6, 7, 8]
    assert await backend.replay("thread:1", Position(epoch, 2)) is None  # 3 fell out: never partial
    assert await backend.replay("thread:1", Position(epoch, 8)) == []
    assert await backend.replay("thread:1", Position(epoch, 9)) is None  # from the future
    assert await backend.replay("thread:1", Position(epoch, -1)) is None
    assert await backend.replay("thread:1", Position("another-epoch", 7)) is None
    fresh = await backend.position("thread:2")
    assert await backend.replay("thread:2", fresh) == []


async def test_replay_refuses_events_older_than_the_history_ttl(make_backend: MakeBackend) -> None:
    backend, delivered = await make_backend(history_ttl_s=0.5)
    for i in range(2):
        assert await append(backend, chunk(1, str(i)))
    await delivered.wait_for(2)
    epoch = (await backend.position("thread:1")).epoch
    assert [p.seqs["thread:1"] for p in await backend.replay("thread:1", Position(epoch, 0)) or []] == [1, 2]
    await asyncio.sleep(0.6)  # not synchronisation: the feature is wall-clock age, so let 0.6 s pass
    assert await backend.replay("thread:1", Position(epoch, 0)) is None
    assert await backend.replay("thread:1", Position(epoch, 2)) == []  # nothing missed: nothing needed


async def test_subscribers_through_bus_and_manager_get_gapless_streams(make_backend: MakeBackend) -> None:
    """Resubscribing with `since` and subscribing fresh, both while a stream is being published."""
    backend, _ = await make_backend(start=False)
    bus = EventBus(backend, catalog=CHAT)
    await bus.start()
    manager = ConnectionManager(bus)

    def connect() -> tuple[Sink, Connection]:
        sink = Sink()
        outbox = AsgiOutbox(sink.send, sink.close)
        outbox.start()
        return sink, manager.add(outbox)

    try:
        first_sink, first = connect()
        await manager.subscribe(first, ["thread:7"])
        for i in range(5):
            await bus.publish(chunk(7, str(i)))
        last = (await first_sink.wait_for(6))[-1]
        manager.remove(first.client_id)

        halfway = asyncio.Event()

        async def stream() -> None:
            for i in range(5, 205):
                await bus.publish(chunk(7, str(i)))
                if i == 25:
                    halfway.set()
                await asyncio.sleep(0)

        streaming = asyncio.create_task(stream())
        await asyncio.wait_for(halfway.wait(), 10)
        back_sink, back = connect()
        fresh_sink, fresh = connect()
        since = {"thread:7": Position(last["epoch"], last["seq"])}
        back_ack, fresh_ack = await asyncio.gather(
            manager.subscribe(back, ["thread:7"], since),
            manager.subscribe(fresh, ["thread:7"]),
        )
        await asyncio.wait_for(streaming, 20)

        assert back_ack.positions["thread:7"].recovered is True
        back_events = (await back_sink.wait_for(1 + 200))[1:]
        assert [f["seq"] for f in back_events] == list(range(6, 206))
        assert [f["data"]["content"] for f in back_events] == [str(i) for i in range(5, 205)]
        start = fresh_ack.positions["thread:7"].seq
        assert start >= 20  # it joined mid-stream
        fresh_events = (await fresh_sink.wait_for(1 + 205 - start))[1:]
        assert [f["seq"] for f in fresh_events] == list(range(start + 1, 206))
    finally:
        await bus.stop()


async def test_a_replay_from_the_id_of_the_last_event_seen_is_refused_when_another_event_holds_its_place(
    make_backend: MakeBackend,
) -> None:
    backend, delivered = await make_backend()
    events = [chunk(3, str(i)) for i in range(4)]
    for event in events:
        assert await append(backend, event)
    await delivered.wait_for(4)
    at_two = delivered.publications[1].position("thread:3")
    proven = Position(at_two.epoch, 2, events[1].event_id)
    replayed = await backend.replay("thread:3", proven)
    assert replayed is not None
    assert [p.event.event_id for p in replayed] == [e.event_id for e in events[2:]]
    caught_up = Position(at_two.epoch, 4, events[3].event_id)
    assert await backend.replay("thread:3", caught_up) == []
    # The numbers match, the event does not: not the stream the client followed.
    assert await backend.replay("thread:3", Position(at_two.epoch, 2, "someone-else")) is None
    assert await backend.replay("thread:3", Position(at_two.epoch, 4, "someone-else")) is None
