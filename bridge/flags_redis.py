"""Flags in Redis: one flags document for every worker and host of a deployment.

The document is one JSON value under `{prefix}:flags`; a change is a compare-and-set (WATCH /
MULTI) that bumps the revision, appends to the audit list `{prefix}:flags:audit` (capped) and
announces the new revision on the channel `{prefix}:flags:changed`. Each worker listens on that
channel and also re-reads the key every `poll_s` (a pub/sub message lost across a reconnect must
not leave a worker behind), so a change is in force on every worker within a second. Each worker
exports the revision it runs (`wsmigrate_flags_revision`), so skew is visible.

Revisions never go backwards. Redis may come back without the key (`FLUSHALL`, a restart without
persistence) or with an older document (an older RDB snapshot, a lagging replica). A worker that
reads no document, or one older than the revision it runs, writes its own back (compare-and-set:
only over a missing or still older value) and announces it; a change applied meanwhile starts
from the newest document the worker knows, never from the seed. So every worker ends on the
highest revision any of them had, and no worker silently falls back to an older stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Collection
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from wsmigrate.bridge.flags import FlagChange, MemoryFlagStore, apply_change
from wsmigrate.bridge.stages import FlagsDocument

log = logging.getLogger(__name__)

AUDIT_KEEP = 1000
POLL_S = 0.5
RECONNECT_S = 0.5
LISTEN_WAIT_S = 1.0


class RedisFlagStore(MemoryFlagStore):
    """A `FlagStore` whose document lives in Redis (see module docstring)."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "wsmigrate", seed: FlagsDocument | None = None,
                 poll_s: float = POLL_S, event_types: Collection[str] | None = None) -> None:
        super().__init__(seed or FlagsDocument())
        self._context = None if event_types is None else {"event_types": tuple(event_types)}
        self._seed = seed or FlagsDocument()
        self._redis: Redis = Redis.from_url(url, decode_responses=True, socket_timeout=5)
        self.key = f"{prefix}:flags"
        self.audit_key = f"{prefix}:flags:audit"
        self.channel = f"{prefix}:flags:changed"
        self.poll_s = poll_s
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        await self._redis.set(self.key, self._seed.to_json(), nx=True)  # the first worker seeds it
        await self.refresh()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._poll())]

    async def stop(self) -> None:
        self._stopping = True  # the listener also ends by itself: redis-py can swallow its cancellation
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    async def refresh(self) -> bool:
        """Adopt the document in Redis if it is newer than ours; True when it changed."""
        raw = await self._redis.get(self.key)
        if raw is None:
            await self._restore_newest(None)
            return False
        try:
            document = FlagsDocument.model_validate_json(raw, context=self._context)
        except ValueError as exc:
            self.last_error = f"flags document in Redis rejected: {exc}"
            log.error("%s; keeping revision %d", self.last_error, self.current().revision)
            return False
        self.last_error = None
        current = self.current()
        if document.revision < current.revision:
            await self._restore_newest(document.revision)
            return False
        if document == current:
            return False
        self._install(document)
        return True

    async def _restore_newest(self, found: int | None) -> None:
        """Redis lost the document or holds an older one: write ours back, unless a worker with
        a newer one already did (module docstring)."""
        ours = self.current()
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(self.key)
                raw = await pipe.get(self.key)
                stored = self._parse(raw)
                if stored is not None and stored.revision >= ours.revision:
                    return
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(self.key, ours.to_json())
                await pipe.execute()
            except WatchError:
                return  # changed meanwhile: the next refresh judges the new value
        what = "missing" if found is None else f"at revision {found}"
        log.warning("flags document in Redis was %s; restored revision %d", what, ours.revision)
        await self._redis.publish(self.channel, str(ours.revision))

    def _parse(self, raw: bytes | str | None) -> FlagsDocument | None:
        if raw is None:
            return None
        try:
            return FlagsDocument.model_validate_json(raw, context=self._context)
        except ValueError:
            return None

    async def _listen(self) -> None:
        """Refresh on each announcement. Reads with a timeout rather than `pubsub.listen()`: a
        cancellation that arrives while redis-py is reading a reply can be swallowed there, and
        `stop` would then wait forever; with `_stopping` the loop ends within `LISTEN_WAIT_S`."""
        while not self._stopping:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    await self.refresh()  # anything announced while we were not listening
                    while not self._stopping:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_WAIT_S)
                        if message is not None and message.get("type") == "message":
                            await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("flags listener lost Redis (%r); retrying", exc)
            if not self._stopping:
                await asyncio.sleep(RECONNECT_S)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            with contextlib.suppress(RedisError, OSError):
                await self.refresh()

    async def apply(self, change: FlagChange, who: str) -> FlagsDocument:
        async with self._lock:
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(self.key)
                        raw = await pipe.get(self.key)
                        stored = FlagsDocument.model_validate_json(raw, context=self._context) if raw else None
                        before = self.current()  # the newest we know: Redis may have lost or rolled back
                        if stored is not None and stored.revision >= before.revision:
                            before = stored
                        after = apply_change(before, change)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(self.key, after.to_json())
                        await pipe.execute()
                        break
                    except WatchError:
                        continue  # another worker changed the flags meanwhile: re-apply on top
            self._install(after)
            self._record(who, change, before, after)
            entry: dict[str, Any] = self.audit()[-1]
            await self._redis.lpush(self.audit_key, json.dumps(entry))
            await self._redis.ltrim(self.audit_key, 0, AUDIT_KEEP - 1)
            await self._redis.publish(self.channel, str(after.revision))
            return after

    async def audit_log(self) -> list[dict[str, Any]]:
        """The deployment-wide audit log, oldest first."""
        return [json.loads(e) for e in reversed(await self._redis.lrange(self.audit_key, 0, AUDIT_KEEP - 1))]
