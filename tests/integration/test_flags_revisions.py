"""Flag revisions never go backwards, whatever Redis comes back with.

Two workers' flag stores on one (real) Redis run revision N. Redis then loses the document (as after
`FLUSHALL` or a restart without persistence), or comes back with an older one (an older RDB
snapshot): the next refresh of any worker writes revision N back and both keep running it; a change
made meanwhile starts from N, so no worker silently returns to an older stage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from wsmigrate.bridge.flags import FlagChange
from wsmigrate.bridge.flags_redis import RedisFlagStore
from wsmigrate.bridge.stages import FlagsDocument, Stage, resolve

TYPES = ("message_created", "stream_chunk")


@pytest.fixture
async def workers(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[RedisFlagStore, RedisFlagStore, Redis]]:
    stores = [RedisFlagStore(redis_url, prefix=redis_prefix, event_types=TYPES, poll_s=3600) for _ in range(2)]
    for store in stores:
        await store.start()
    raw = Redis.from_url(redis_url, decode_responses=True)
    yield stores[0], stores[1], raw
    await raw.aclose()
    for store in stores:
        await store.stop()


async def advance(store: RedisFlagStore) -> FlagsDocument:
    await store.apply(FlagChange(kind="stage", event_type="stream_chunk", stage=Stage.SHADOW), "test")
    return await store.apply(FlagChange(kind="stage", event_type="stream_chunk", stage=Stage.LIVE), "test")


async def test_a_lost_document_is_restored_at_the_newest_revision(
    workers: tuple[RedisFlagStore, RedisFlagStore, Redis],
) -> None:
    first, second, raw = workers
    newest = await advance(first)
    await second.refresh()
    assert second.current().revision == newest.revision

    await raw.delete(first.key)  # what FLUSHALL or a restart without data leaves
    assert await second.refresh() is False
    stored = FlagsDocument.model_validate_json(await raw.get(first.key))
    assert stored.revision == newest.revision
    assert resolve(stored, "stream_chunk").stage is Stage.LIVE
    for store in (first, second):
        await store.refresh()
        assert store.current().revision == newest.revision
        assert resolve(store.current(), "stream_chunk").stage is Stage.LIVE


async def test_an_older_document_is_overwritten_and_a_change_meanwhile_starts_from_the_newest(
    workers: tuple[RedisFlagStore, RedisFlagStore, Redis],
) -> None:
    first, second, raw = workers
    older = first.current()
    newest = await advance(first)
    await second.refresh()

    await raw.set(first.key, older.to_json())  # an older snapshot came back
    # A change on a worker before any refresh: from the newest revision it knows, not the old one.
    after = await second.apply(FlagChange(kind="stage", event_type="message_created", stage=Stage.SHADOW), "test")
    assert after.revision == newest.revision + 1
    assert resolve(after, "stream_chunk").stage is Stage.LIVE

    await raw.set(first.key, older.to_json())
    await first.refresh()  # restores the newest revision it runs (N, or N+1 once it heard of `after`)
    stored = FlagsDocument.model_validate_json(await raw.get(first.key))
    assert stored.revision >= newest.revision
    for store in (second, first):  # second restores N+1 if first wrote N; then first adopts it
        await store.refresh()
    assert first.current().revision == second.current().revision == after.revision
    assert FlagsDocument.model_validate_json(await raw.get(first.key)).revision == after.revision
