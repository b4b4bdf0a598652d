"""The sharded Redis bus on a real three-node Redis Cluster (`redis-server --cluster-enabled yes`,
started by the suite on loopback): exactly-once delivery in each topic's order across workers,
replay, rollback detection per shard, events split across shards, and the faults a cluster adds
(a node that forgot its scripts, a reader's connection cut, a slot that moves under a worker that
follows topics). The `BusBackend` contract runs on it too (tests/contract/test_bus_backend_contract.py,
`redis-cluster` and `redis-cluster-topics`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.contract.helpers import Delivered, Sink, agent_updated, append, chunk, thread_updated
from tests.support import CHAT
from wsmigrate.unified import ConnectionManager, EventBus, Position
from wsmigrate.unified.events import Event
from wsmigrate.unified.outbox import AsgiOutbox
from wsmigrate.unified.redis_backend import RedisBackend
from wsmigrate.unified.shard_map import shard_of

SHARDS = 6


async def start_worker(cluster: Any, prefix: str, worker_id: str, **options: Any) -> tuple[RedisBackend, Delivered]:
    backend = RedisBackend(f"{cluster.url}?cluster=true&shards={SHARDS}", prefix=prefix, worker_id=worker_id,
                           **options)
    delivered = Delivered()
    await backend.start(delivered)
    return backend, delivered


async def test_two_workers_deliver_every_event_once_in_each_topics_order(redis_cluster: Any,
                                                                       cluster_prefix: str) -> None:
    a, on_a = await start_worker(redis_cluster, cluster_prefix, "a")
    b, on_b = await start_worker(redis_cluster, cluster_prefix, "b")
    try:
        topics = [f"thread:{n}" for n in range(1, 13)]
        assert len({shard_of(t, SHARDS) for t in topics}) > 3  # the events really spread over shards

        async def publisher(worker: RedisBackend, n: int) -> list[Event]:
            events: list[Event] = []
            for i in range(60):
                event = thread_updated(1 + i % 12, 1 + n) if i % 10 == 0 else chunk(1 + (n + i) % 12, f"{n}-{i}")
                assert await append(worker, event)
                assert not await append(worker, event)  # a republished id: suppressed, on every shard
                events.append(event)
            return events

        published = [e for events in await asyncio.gather(*(publisher(w, n) for n, w in enumerate([a, b, a, b])))
                     for e in events]
        pairs = {(e.event_id, t) for e in published for t in CHAT.delivery_topics(e)}
        for delivered in (on_a, on_b):
            got = await delivered.wait_for_topics(len(pairs))
            assert sorted((p.event.event_id, t) for p in got for t in p.topics) == sorted(pairs)  # once each
            for topic in {t for _, t in pairs}:
                seqs = delivered.seqs(topic)
                assert seqs == list(range(1, len(seqs) + 1))  # gapless, in order
                position = await a.position(topic)
                assert position.seq == len(seqs)
                replayed = await b.replay(topic, Position(position.epoch, 0))
                assert replayed is not None
                assert [p.event.event_id for p in replayed] == delivered.topic_ids(topic)
    finally:
        await a.stop()
        await b.stop()


async def test_a_node_that_lost_its_data_resets_its_own_shards_only(redis_cluster: Any, cluster_prefix: str) -> None:
    reasons: list[str] = []
    worker, delivered = await start_worker(redis_cluster, cluster_prefix, "w", on_discontinuity=reasons.append)
    try:
        node_of = {n: redis_cluster.node_of(worker.keys_of(f"thread:{n}").events) for n in range(1, 40)}
        lost_node = node_of[1]
        lost = next(n for n, node in node_of.items() if node is lost_node)
        kept = next(n for n, node in node_of.items() if node is not lost_node)
        for n in (lost, kept):
            for i in range(3):
                assert await append(worker, chunk(n, str(i)))
        await delivered.wait_for(6)
        before = {n: await worker.position(f"thread:{n}") for n in (lost, kept)}

        raw = Redis(host="127.0.0.1", port=lost_node.port)
        try:
            await raw.flushall()  # that node restarted empty: its shards' history and incarnations are gone
        finally:
            await raw.aclose()
        assert await append(worker, chunk(lost, "after"))
        assert await append(worker, chunk(kept, "after"))
        await delivered.wait_for(8)

        assert await worker.replay(f"thread:{lost}", before[lost]) is None  # recovered: false
        replayed = await worker.replay(f"thread:{kept}", before[kept])  # another node's shard: exact
        assert replayed is not None
        assert [p.event.data["content"] for p in replayed] == ["after"]
        assert "reset" in reasons
        assert (await worker.position(f"thread:{lost}")).epoch != before[lost].epoch
    finally:
        await worker.stop()


async def test_an_event_split_across_shards_reaches_a_connection_once_per_part_and_handlers_once(
    redis_cluster: Any, cluster_prefix: str,
) -> None:
    thread, agent = next((t, a) for t in range(1, 50) for a in range(1, 50)
                         if shard_of(f"thread:{t}", SHARDS) != shard_of(f"agent:{a}", SHARDS))
    backend = RedisBackend(f"{redis_cluster.url}?cluster=true&shards={SHARDS}", prefix=cluster_prefix)
    bus = EventBus(backend, catalog=CHAT)
    handled: list[Event] = []
    marker_handled = asyncio.Event()

    def handle(event: Event) -> None:
        handled.append(event)
        if event.type == "agent_updated":
            marker_handled.set()

    bus.subscribe(None, handle)  # one handler of every type: one queue, in delivery order
    await bus.start()
    manager = ConnectionManager(bus)
    sink = Sink()
    outbox = AsgiOutbox(sink.send, sink.close)
    outbox.start()
    try:
        connection = manager.add(outbox)
        await manager.subscribe(connection, [f"thread:{thread}", f"agent:{agent}"])
        split = thread_updated(thread, agent)
        assert await bus.publish(split)
        frames = [f for f in await sink.wait_for(3) if f.get("event_id") == split.event_id]
        # One frame per part, each with its own topic and position; no part claims the other's topics.
        assert sorted(f["topic"] for f in frames) == sorted([f"thread:{thread}", f"agent:{agent}"])
        assert all(f["seq"] == 1 and "topics" not in f and "positions" not in f for f in frames)
        # On the shard of part 1, after it: once the handler has the marker, part 1 was delivered too.
        assert await bus.publish(agent_updated(agent))
        await asyncio.wait_for(marker_handled.wait(), 10)  # handlers run on tasks of their own
        assert [e.event_id for e in handled].count(split.event_id) == 1  # part 1 is not handled again
    finally:
        await bus.stop()


async def test_a_node_that_forgot_its_scripts_still_takes_appends(redis_cluster: Any, cluster_prefix: str) -> None:
    worker, delivered = await start_worker(redis_cluster, cluster_prefix, "w")
    try:
        for node in redis_cluster.nodes:
            raw = Redis(host="127.0.0.1", port=node.port)
            try:
                await raw.script_flush()  # what a restarted node has: no scripts
            finally:
                await raw.aclose()
        topics = [f"thread:{n}" for n in range(1, 13)]
        assert {topic: p.seq for topic, p in (await worker.positions(topics)).items()} == dict.fromkeys(topics, 0)
        for node in redis_cluster.nodes:  # again: the positions above loaded the scripts back
            raw = Redis(host="127.0.0.1", port=node.port)
            try:
                await raw.script_flush()
            finally:
                await raw.aclose()
        events = [chunk(n, "x") for n in range(1, 13)]
        for event in events:
            assert await append(worker, event)
        await delivered.wait_for(len(events))
        assert sorted(delivered.ids) == sorted(e.event_id for e in events)
    finally:
        await worker.stop()


async def test_a_shard_reader_cut_off_resumes_where_it_was(redis_cluster: Any, cluster_prefix: str) -> None:
    worker, delivered = await start_worker(redis_cluster, cluster_prefix, "w")
    other, _ = await start_worker(redis_cluster, cluster_prefix, "p")
    try:
        shard = worker.shard_of("thread:3")
        for i in range(5):
            assert await append(other, chunk(3, f"before{i}"))
        await delivered.wait_for(5)
        node = redis_cluster.node_of(worker.keys_of("thread:3").events)
        admin = Redis(host="127.0.0.1", port=node.port, decode_responses=True)
        try:
            readers = [c for c in await admin.client_list() if c["name"] == worker.shard_reader_name(shard)]
            assert len(readers) == 1
            assert await admin.client_kill_filter(_id=readers[0]["id"]) == 1
        finally:
            await admin.aclose()
        for i in range(20):
            assert await append(other if i % 2 else worker, chunk(3, f"meanwhile{i}"))
        position = await worker.position("thread:3")  # waits for that shard's reader to catch up again
        assert delivered.seqs("thread:3") == list(range(1, 26))
        assert position.seq == 25
        assert worker.listeners[shard].reconnects >= 1
    finally:
        await worker.stop()
        await other.stop()


def test_a_cluster_bus_needs_its_shard_count() -> None:
    with pytest.raises(ValueError, match="shards"):
        RedisBackend("redis://127.0.0.1:7000?cluster=true")
    with pytest.raises(ValueError, match="1 to"):
        RedisBackend("redis://127.0.0.1:7000?shards=0")
    backend = RedisBackend("redis://user:secret@cache:7000/0?cluster=yes&shards=12&prefix=blue&ssl_cert_reqs=none")
    assert (backend.cluster, backend.shards, backend.keys.prefix) == (True, 12, "blue")
    assert backend.url == "redis://user:secret@cache:7000/0?ssl_cert_reqs=none"  # ours stripped, redis-py's kept


async def test_servers_on_a_cluster_bus_give_every_client_every_event_once_in_order(
    redis_cluster: Any, cluster_prefix: str, redis_url: str, redis_prefix: str, server_factory: Any,
) -> None:
    from tests.redis_server import bus_url
    from tests.support import Client, rest

    url = f"{redis_cluster.url}?cluster=true&shards={SHARDS}&prefix={cluster_prefix}"
    flags = bus_url(redis_url, redis_prefix)  # the flags document lives on one Redis primary
    first = server_factory(bus_url=url, flags_url=flags)
    second = server_factory(bus_url=url, flags_url=flags, database_url=first.chat.settings.database_url)
    agent = await rest(first, "POST", "/api/agents", {"name": "a"})
    threads = [await rest(first, "POST", "/api/threads", {"agent_id": agent["id"]}) for _ in range(3)]
    topics = [f"thread:{t['id']}" for t in threads]
    clients = [await Client.open(s.ws_url()) for s in (first, second)]
    for client in clients:
        for topic in topics:
            await client.subscribe(topic)
    posted: dict[str, list[int]] = {topic: [] for topic in topics}
    for index in range(30):  # publishers on both servers, on three topics
        thread = threads[index % 3]
        message = await rest((first, second)[index % 2], "POST", f"/api/threads/{thread['id']}/messages",
                             {"content": str(index)})
        posted[f"thread:{thread['id']}"].append(message["id"])
    for client in clients:
        frames = [await client.recv() for _ in range(30)]
        for topic in topics:
            mine = [f for f in frames if f["topic"] == topic]
            assert [f["data"]["id"] for f in mine] == posted[topic]
            assert [f["seq"] for f in mine] == list(range(mine[0]["seq"], mine[0]["seq"] + 10))
        await client.send({"type": "ping", "message_id": "end"})
        assert await client.recv() == {"type": "pong", "message_id": "end"}  # nothing twice
        await client.close()
    health = await rest(second, "GET", "/healthz")
    assert health["status"] == "ok"


def test_a_cluster_bus_keeps_its_flags_on_one_redis_primary() -> None:
    from wsmigrate import Settings
    from wsmigrate.bridge.server.runtime import make_flag_store

    settings = Settings.from_env({}, bus_url="redis://127.0.0.1:7000?cluster=true&shards=6")
    with pytest.raises(ValueError, match="WSMIGRATE_FLAGS_URL"):
        make_flag_store(settings, ["message_created"])


async def test_a_shard_reader_follows_its_stream_to_the_replica_that_took_over(cluster_prefix: str) -> None:
    """A failover (the primary of a shard's slot hands over to its replica): the shard's reader
    gets MOVED where it was, finds the new primary and resumes from its last entry, exactly."""
    from tests.redis_server import RedisClusterServers

    cluster = RedisClusterServers(3).start()  # its own: the test changes the cluster's shape
    try:
        worker, delivered = await start_worker(cluster, cluster_prefix, "w")
        publisher, _ = await start_worker(cluster, cluster_prefix, "p")
        try:
            shard = worker.shard_of("thread:3")
            primary = cluster.node_of(worker.keys_of("thread:3").events)
            replica = await asyncio.to_thread(cluster.add_replica, primary)
            for i in range(10):
                assert await append(publisher, chunk(3, f"before{i}"))
            await delivered.wait_for(10)

            await asyncio.to_thread(cluster.failover, replica)
            assert cluster.node_of(worker.keys_of("thread:3").events) is replica
            for i in range(10):  # the cluster client follows MOVED for appends by itself
                await append_when_served(publisher, chunk(3, f"after{i}"))
            position = await worker.position("thread:3")  # waits for that shard's reader, wherever it is

            assert delivered.seqs("thread:3") == list(range(1, 21))
            assert position.seq == 20
            assert [p.event.data["content"] for p in delivered.publications[10:]] == [f"after{i}" for i in range(10)]
            assert worker.listeners[shard].reconnects >= 1
            await worker.listeners[shard].wait_until_healthy(True, timeout=10)
        finally:
            await worker.stop()
            await publisher.stop()
    finally:
        cluster.close()


async def append_when_served(backend: RedisBackend, event: Event, timeout: float = 10.0) -> None:
    """Publish once the cluster serves the event's slot again (a failover takes a moment)."""
    from wsmigrate.unified.errors import BusUnavailableError

    async with asyncio.timeout(timeout):
        while True:
            try:
                await append(backend, event)  # a retry after a lost reply: deduplicated, once
                return
            except BusUnavailableError:
                await asyncio.sleep(0.05)  # the cluster is electing: there is nothing to wait on


@pytest.mark.parametrize("delivery", ["stream", "topics"])
async def test_a_shard_reader_whose_slot_migrates_resumes_on_its_new_node_with_nothing_lost(
    cluster_prefix: str, delivery: str,
) -> None:
    """A live reshard of one shard's slot (keys migrated, then the slot handed over). Reading the
    stream, the reader gets ASK or MOVED where it was, finds the slot's new node and resumes from its
    last entry. Following topics, Redis unsubscribes the follower from the slot's channels (what it
    pushed meanwhile is lost to pub/sub); the follower finds the new node, subscribes there and
    resumes from the shard's stream, which moved with the slot. Either way every event, those of the
    move included, is delivered once, in order, with no discontinuity, and the history moved too."""
    from tests.redis_server import RedisClusterServers

    cluster = RedisClusterServers(3).start()  # its own: the test changes the cluster's shape
    gaps: list[str] = []
    try:
        worker, delivered = await start_worker(cluster, cluster_prefix, "w", delivery=delivery,
                                               on_discontinuity=gaps.append)
        worker.follow("thread:3")
        publisher, _ = await start_worker(cluster, cluster_prefix, "p")
        try:
            shard, key = worker.shard_of("thread:3"), worker.keys_of("thread:3").events
            await worker.position("thread:3")  # a follower's subscription is confirmed by then
            source = cluster.node_of(key)
            target = next(node for node in cluster.nodes if node is not source)
            for i in range(10):
                assert await append(publisher, chunk(3, f"before{i}"))
            await delivered.wait_for(10)

            await asyncio.to_thread(cluster.move_slot, key, target)
            assert cluster.node_of(key) is target
            for i in range(5):
                await append_when_served(publisher, chunk(3, f"during{i}"))
            await worker.position("thread:3")  # a follower is subscribed on the slot's new node by now
            for i in range(5):
                assert await append(publisher, chunk(3, f"after{i}"))
            position = await worker.position("thread:3")
            await delivered.wait_for_topics(20)

            assert delivered.seqs("thread:3") == list(range(1, 21))  # all, once, in order
            assert position.seq == 20
            assert [p.event.data["content"] for p in delivered.publications[10:]] == [
                *(f"during{i}" for i in range(5)), *(f"after{i}" for i in range(5))]
            assert gaps == []
            reader = (worker.listeners if delivery == "stream" else worker.followers)[shard]
            assert reader.reconnects >= 1
            await reader.wait_until_healthy(True, timeout=10)
            assert (await worker.replay("thread:3", Position(position.epoch, 0))) is not None  # history moved too
        finally:
            await worker.stop()
            await publisher.stop()
    finally:
        cluster.close()


async def test_the_liveness_gauges_say_the_worst_of_the_shard_readers(cluster_prefix: str) -> None:
    """One node hangs: the readers of its shards go stale while the others stay live, and the
    worker's `wsmigrate_bus_listener_up` says 0 (and healthy() False) until that node is back."""
    from prometheus_client import CollectorRegistry

    from examples.chat.declaration import ChatEvent
    from tests.redis_server import RedisClusterServers
    from wsmigrate.metrics import WsMetrics

    cluster = RedisClusterServers(3).start()  # its own: the test freezes a node
    metrics = WsMetrics(CollectorRegistry(), event_types=[t.value for t in ChatEvent])
    up = metrics.bus_listener_up
    try:
        worker, _ = await start_worker(cluster, cluster_prefix, "w", metrics=metrics)
        try:
            assert up._value.get() == 1
            frozen = cluster.node_of(worker.keys_of("thread:1").events)
            on_frozen = [listener for shard, listener in enumerate(worker.listeners)
                         if cluster.node_of(worker.shard_keys[shard].events) is frozen]
            others = [listener for listener in worker.listeners if listener not in on_frozen]
            assert on_frozen
            assert others
            frozen.pause()
            try:
                for listener in on_frozen:
                    await listener.wait_until_healthy(False, timeout=10)
                assert all(listener.healthy() for listener in others)  # the other nodes' shards read on
                assert not worker.healthy()
                await until(lambda: up._value.get() == 0)
                beat = others[0].heartbeat_age()
                await until(lambda: others[0].heartbeat_age() < beat)  # a live reader reported again ...
                assert up._value.get() == 0  # ... and the gauge still says the worst of them
            finally:
                frozen.resume()
            for listener in on_frozen:
                await listener.wait_until_healthy(True, timeout=10)
            assert worker.healthy()
            await until(lambda: up._value.get() == 1)
        finally:
            await worker.stop()
    finally:
        cluster.close()


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Poll a gauge (bounded): the sharded readers' summary is recomputed at most every 0.25 s."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a gauge cell has nothing to wait on
            await asyncio.sleep(0.05)
