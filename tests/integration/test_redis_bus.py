"""What only the Redis backend promises: several workers on one stream, and surviving Redis trouble.

Each "worker" is a `RedisBackend` instance with its own reader, as in a uvicorn worker process.
Tests that break Redis (freeze it, restart it empty) get a private `redis-server`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from examples.chat.declaration import ChatEvent
from tests.contract.helpers import Delivered, append, chunk
from tests.redis_server import RedisServer
from wsmigrate.bridge.server.runtime import make_backend
from wsmigrate.bridge.server.settings import Settings
from wsmigrate.metrics import WsMetrics
from wsmigrate.unified import Event, Position
from wsmigrate.unified.redis_backend import BusUnavailableError, RedisBackend

Worker = tuple[RedisBackend, Delivered]
StartWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker() -> AsyncIterator[StartWorker]:
    started: list[RedisBackend] = []

    async def start(url: str, prefix: str, **options: object) -> Worker:
        backend = RedisBackend(url, prefix=prefix, **options)  # type: ignore[arg-type]
        delivered = Delivered()
        await backend.start(delivered)
        started.append(backend)
        return backend, delivered

    yield start
    for backend in started:
        await backend.stop()



async def test_two_workers_each_deliver_every_event_once_in_the_same_order(
    redis_url: str, redis_prefix: str, start_worker: StartWorker  # this order: workers stop before keys go
) -> None:
    (a, at_a), (b, at_b) = [await start_worker(redis_url, redis_prefix, worker_id=w) for w in "ab"]

    async def publisher(backend: RedisBackend, name: str) -> list[Event]:
        events = [chunk(1 + i % 2, f"{name}{i}") for i in range(40)]
        for event in events:
            assert await append(backend, event)
        return events

    events_a, events_b = await asyncio.gather(publisher(a, "a"), publisher(b, "b"))
    assert not await append(b, events_a[0])  # a retry through another worker is still a duplicate
    from_a, from_b = [e.event_id for e in events_a], [e.event_id for e in events_b]
    await at_a.wait_for(80)
    await at_b.wait_for(80)

    assert at_a.ids == at_b.ids  # one global order, seen identically by every worker
    assert sorted(at_a.ids) == sorted(from_a + from_b)  # every event, exactly once
    for topic in ("thread:1", "thread:2"):
        assert at_a.seqs(topic) == list(range(1, 41))
    assert [i for i in at_b.ids if i in set(from_a)] == from_a  # a publisher's order survives fan-out


async def test_a_worker_decodes_only_the_entries_its_subscribers_need(
    redis_url: str, redis_prefix: str, start_worker: StartWorker  # this order: workers stop before keys go
) -> None:
    """The interest filter against the plain path: the same stream, two readers, one filtering."""
    plain, everything = await start_worker(redis_url, redis_prefix, worker_id="plain")
    followed = {"thread:1", "thread:2"}
    gaps: list[str] = []
    metrics = WsMetrics(CollectorRegistry(), event_types=[t.value for t in ChatEvent])
    worker = RedisBackend(redis_url, prefix=redis_prefix, worker_id="filtering", on_discontinuity=gaps.append,
                          metrics=metrics)
    needed = Delivered()
    await worker.start(needed, lambda _type, topics: any(t in followed for t in topics))
    try:
        first = [chunk(1 + i % 3, f"a{i}") for i in range(30)]  # thread 1, 2 and 3 in turn
        for event in first:
            assert await append(plain, event)
        await everything.wait_for(30)
        assert (await worker.position("thread:3")).seq == 10  # caught up past every entry, needed or not
        assert needed.ids == [p.event.event_id for p in everything.publications if p.topics[0] != "thread:3"]
        assert worker.listener is not None
        assert worker.listener.skipped == 10
        assert metrics.registry.get_sample_value("wsmigrate_bus_entries_skipped_total") == 10

        followed.discard("thread:2")  # its last subscriber left; six more events go by, unread
        for i in range(6):
            assert await append(plain, chunk(2, f"b{i}"))
        followed.add("thread:2")  # subscribed again: from here on every entry of it is delivered
        start = await worker.position("thread:2")
        assert start.seq == 16
        for i in range(3):
            assert await append(plain, chunk(2, f"c{i}"))
        await needed.wait_for(23)
        assert needed.seqs("thread:2")[-4:] == [10, 17, 18, 19]  # 11..16 were skipped, and that is no gap
        assert gaps == []
        assert [p.event.event_id for p in needed.publications] == [
            p.event.event_id for p in await everything.wait_for(39)
            if p.topics[0] == "thread:1" or (p.topics[0] == "thread:2" and p.seqs["thread:2"] not in range(11, 17))
        ]
    finally:
        await worker.stop()


async def test_under_steady_traffic_one_read_brings_the_entries_of_its_interval(
    redis_url: str, redis_prefix: str, start_worker: StartWorker  # this order: workers stop before keys go
) -> None:
    publisher, _ = await start_worker(redis_url, redis_prefix, worker_id="p")
    worker, delivered = await start_worker(redis_url, redis_prefix, worker_id="w", read_interval_s=0.2)
    assert await append(publisher, chunk(4, "first"))
    await delivered.wait_for(1)
    assert worker.listener is not None
    reads = worker.listener.reads
    events = [chunk(4, f"steady{i}") for i in range(10)]
    for event in events:  # one at a time, each awaited: a steady trickle, well within the interval
        assert await append(publisher, event)
    await delivered.wait_for(11)
    assert worker.listener.reads - reads <= 3  # not one read per entry
    assert delivered.ids[1:] == [e.event_id for e in events]  # every entry, in order, as the plain path
    assert delivered.seqs("thread:4") == list(range(1, 12))


async def test_concurrent_publishes_share_round_trips_and_keep_call_order(
    redis_url: str, redis_prefix: str, start_worker: StartWorker  # this order: workers stop before keys go
) -> None:
    worker, delivered = await start_worker(redis_url, redis_prefix, worker_id="w")
    events = [chunk(1 + i % 3, f"c{i}") for i in range(300)]
    pipelines_before = worker.append_pipelines
    accepted = await asyncio.gather(*(append(worker, event) for event in events))  # started in this order
    assert all(accepted)
    assert worker.append_pipelines - pipelines_before < len(events) / 10  # shared, not one each
    await delivered.wait_for(300)
    assert delivered.ids == [e.event_id for e in events]  # the global stream keeps the call order
    for topic in ("thread:1", "thread:2", "thread:3"):
        assert delivered.seqs(topic) == list(range(1, 101))


async def test_reader_resumes_without_a_gap_after_its_connection_is_killed(
    redis_url: str, redis_prefix: str, start_worker: StartWorker  # this order: workers stop before keys go
) -> None:
    worker, delivered = await start_worker(redis_url, redis_prefix, worker_id="w")
    other, _ = await start_worker(redis_url, redis_prefix, worker_id="p")
    before = [chunk(3, f"before{i}") for i in range(5)]
    for event in before:
        assert await append(other, event)
    await delivered.wait_for(5)

    admin = Redis.from_url(redis_url, decode_responses=True)
    try:
        readers = [c for c in await admin.client_list() if c["name"] == worker.reader_client_name]
        assert len(readers) == 1  # one reader per worker, whatever it subscribed
        assert await admin.client_kill_filter(_id=readers[0]["id"]) == 1
    finally:
        await admin.aclose()
    meanwhile = [chunk(3, f"meanwhile{i}") for i in range(20)]
    for i, event in enumerate(meanwhile):
        assert await append(other if i % 2 else worker, event)
    position = await worker.position("thread:3")  # waits for the reader to catch up again

    assert delivered.seqs("thread:3")[-1] == position.seq == 25
    assert delivered.ids == [e.event_id for e in before + meanwhile]
    assert delivered.seqs("thread:3") == list(range(1, 26))
    assert worker.listener is not None
    assert worker.listener.reconnects >= 1


async def test_a_reader_that_fell_behind_the_stream_trim_reports_the_gap(
    redis_url: str, redis_prefix: str, start_worker: StartWorker  # this order: workers stop before keys go
) -> None:
    gaps: list[str] = []
    worker, delivered = await start_worker(redis_url, redis_prefix, worker_id="slow", on_discontinuity=gaps.append)
    assert await append(worker, chunk(6, "first"))
    await delivered.wait_for(1)

    def flood() -> None:
        async def run() -> None:
            other = RedisBackend(redis_url, prefix=redis_prefix, worker_id="flood", events_maxlen=10)
            await other.start(lambda publication: None)
            try:
                for i in range(300):
                    assert await append(other, chunk(6, str(i)))
            finally:
                await other.stop()

        asyncio.run(run())

    # Another worker floods a short stream from its own thread while this loop (and so this
    # worker's reader) is blocked on purpose: the entries after the reader's position get trimmed.
    flooder = threading.Thread(target=flood)
    flooder.start()
    flooder.join(30)
    assert not flooder.is_alive()
    position = await worker.position("thread:6")

    assert position.seq == 301
    assert delivered.seqs("thread:6")[-1] == 301
    assert len(delivered.publications) < 301  # the trimmed ones never arrived ...
    assert gaps
    assert set(gaps) <= {"gap", "trimmed"}  # ... and the worker said so


async def test_listener_up_drops_within_10s_when_redis_hangs_and_recovers(
    start_worker: StartWorker, private_redis: RedisServer
) -> None:
    metrics = WsMetrics(CollectorRegistry(), event_types=[t.value for t in ChatEvent])
    up, age = metrics.bus_listener_up, metrics.bus_heartbeat_age
    worker, delivered = await start_worker(private_redis.url, "live", metrics=metrics)  # production timings
    assert worker.listener is not None
    assert up._value.get() == 1
    assert worker.healthy()

    private_redis.pause()
    try:
        began = time.monotonic()
        await worker.listener.wait_until_healthy(False, timeout=10)
        took = time.monotonic() - began
        assert up._value.get() == 0
        assert age._value.get() >= worker.stale_after_s
    finally:
        private_redis.resume()
    await worker.listener.wait_until_healthy(True, timeout=10)
    assert up._value.get() == 1
    assert age._value.get() < worker.stale_after_s
    after = chunk(4, "after the freeze")
    assert await append(worker, after)
    await delivered.wait_for(1)
    assert delivered.ids == [after.event_id]
    assert took < 10


async def test_a_redis_that_restarts_empty_yields_new_epochs_and_delivery_resumes(
    start_worker: StartWorker, private_redis: RedisServer
) -> None:
    gaps: list[str] = []
    worker, delivered = await start_worker(private_redis.url, "reset", on_discontinuity=gaps.append)
    for i in range(3):
        assert await append(worker, chunk(5, str(i)))
    await delivered.wait_for(3)
    old = await worker.position("thread:5")

    private_redis.stop()
    with pytest.raises(BusUnavailableError):
        await append(worker, chunk(5, "while down"))
    private_redis.start()  # same port, no data
    after = chunk(5, "after the restart")
    assert await append(worker, after)
    await delivered.wait_for(4)

    resumed = delivered.publications[3]
    assert resumed.event.event_id == after.event_id
    assert resumed.seqs["thread:5"] == 1
    assert resumed.epochs["thread:5"] != old.epoch
    assert gaps == ["reset"]
    assert await worker.replay("thread:5", old) is None  # a client from before gets recovered: false
    assert await worker.position("thread:5") == Position(resumed.epochs["thread:5"], 1)


def test_make_backend_builds_a_redis_backend_for_redis_urls() -> None:
    backend = make_backend(Settings.from_env({}, bus_url="rediss://cache:6380/2?prefix=blue", history_size=7))
    assert isinstance(backend, RedisBackend)
    assert (backend.url, backend.keys.prefix, backend.history_size) == ("rediss://cache:6380/2", "blue", 7)
    assert backend.decoded.capacity == 20_000
    tuned = make_backend(Settings.from_env({"WSMIGRATE_BUS_REPLAY_CACHE": "0",
                                            "WSMIGRATE_BUS_URL": "redis://cache:6379/0?shards=8"}))
    assert isinstance(tuned, RedisBackend)
    assert (tuned.decoded.capacity, tuned.shards, tuned.cluster) == (0, 8, False)


async def test_concurrent_replays_of_a_topic_share_their_decoding_and_equal_uncached_ones(
    redis_url: str, redis_prefix: str, start_worker: StartWorker  # this order: workers stop before keys go
) -> None:
    """Fifty clients of one topic coming back at once, each from its own position: every replay is
    exactly what a worker without the cache answers, frame for frame, and entries are decoded once."""
    shared, _ = await start_worker(redis_url, redis_prefix, worker_id="shared")
    plain, _ = await start_worker(redis_url, redis_prefix, worker_id="plain", replay_cache=0)
    for i in range(30):
        assert await append(shared, chunk(1, f"m{i}"))
    end = await shared.position("thread:1")
    positions = [Position(end.epoch, end.seq - 1 - k % 30) for k in range(50)]

    async def frames(backend: RedisBackend, since: Position) -> list[str]:
        replay = await backend.replay("thread:1", since)
        assert replay is not None
        return [p.frame("thread:1") for p in replay]

    cached = await asyncio.gather(*(frames(shared, since) for since in positions))
    uncached = await asyncio.gather(*(frames(plain, since) for since in positions))
    assert cached == uncached
    assert [len(f) for f in cached] == [1 + k % 30 for k in range(50)]
    assert shared.decoded.misses == 30  # each entry decoded once, then shared
    assert shared.decoded.hits == sum(1 + k % 30 for k in range(50)) - 30
    assert len(plain.decoded) == 0
