"""A Redis restored from an older snapshot keeps its epochs and numbers new events from an older
`seq` again. A client that resubscribes with the id of the last event it saw gets an exact replay
where its stream really continues, and `recovered: false` where another event now holds its place,
never `recovered: true` with a gap. Against a real `redis-server` restarted from its RDB file."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.contract.helpers import Delivered, append, chunk
from wsmigrate.unified import Position
from wsmigrate.unified.errors import BusUnavailableError
from wsmigrate.unified.redis_backend import RedisBackend

TOPIC = "thread:7"


async def append_when_back(backend: RedisBackend, event: Any, timeout: float = 10.0) -> None:
    """Publish once Redis answers again (the writer's connection was cut by the restart)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                assert await append(backend, event)
                return
            except BusUnavailableError:
                await asyncio.sleep(0.05)  # Redis is restarting: there is nothing to wait on


@pytest.mark.parametrize("delivery", ["stream", "topics"])
async def test_a_client_past_the_restored_snapshot_is_told_recovered_false_and_one_before_it_replays_exactly(
    private_redis: Any, delivery: str,
) -> None:
    backend = RedisBackend(private_redis.url, prefix="rollback", history_size=100, delivery=delivery)
    backend.follow(TOPIC)  # a worker that follows topics takes in only those
    delivered = Delivered()
    await backend.start(delivered)
    try:
        before = [chunk(7, f"old {i}") for i in range(5)]
        for event in before[:3]:
            assert await append(backend, event)
        raw = Redis.from_url(private_redis.url)
        await raw.save()  # the snapshot Redis will come back with: three events
        await raw.aclose()
        for event in before[3:]:
            assert await append(backend, event)
        await delivered.wait_for(5)
        epoch = delivered.publications[0].epochs[TOPIC]

        private_redis.stop()  # no save on shutdown: the data since the snapshot is gone
        private_redis.start()
        after = [chunk(7, f"new {i}") for i in range(3)]  # numbered 4, 5, 6 again
        for event in after:
            await append_when_back(backend, event)

        saw_five = Position(epoch, 5, before[4].event_id)
        assert await backend.replay(TOPIC, saw_five) is None  # seq 5 is another event now
        saw_three = Position(epoch, 3, before[2].event_id)
        replayed = await backend.replay(TOPIC, saw_three)
        assert replayed is not None
        assert [p.event.event_id for p in replayed] == [e.event_id for e in after]
        # Why the id is needed: by the numbers alone, the stream looks continuous after 5.
        by_numbers = await backend.replay(TOPIC, Position(epoch, 5))
        assert by_numbers is not None
        assert [p.event.event_id for p in by_numbers] == [after[2].event_id]
    finally:
        await backend.stop()
