"""Script calls to the Redis bus, sent in pipelines: one round trip for many.

Why: an append is one script call, and a worker publishing under load makes thousands a second.
Sent one by one, each waits for the previous reply (6,142 deliveries/s on the benchmark's Redis
row); queued and sent as one pipeline per round trip, concurrent publishers share round trips
(24,804/s). Calls are queued in call order and each pipeline runs after the previous one returned,
so the global stream keeps the order in which the calls were made.

A plain pipeline loads missing scripts itself; a cluster pipeline does not, so a node that
restarted and forgot them answers NOSCRIPT: nothing ran there, and those calls go again once
`load_scripts` gave every primary the scripts (`run`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from wsmigrate.unified.errors import BusUnavailableError
from wsmigrate.unified.redis_listener import CONNECTION_ERRORS

PIPELINE_CALLS = 500  # script calls per pipeline (one round trip)
ScriptCall = tuple[AsyncScript, list[str], list[Any]]  # (script, keys, args)
_Queued = tuple[AsyncScript, list[str], list[Any], "asyncio.Future[Any]"]  # ... and its reply


class ScriptPipeline:
    """Queues script calls and sends them in pipelines (module docstring)."""

    def __init__(self, writer: Callable[[], Redis | RedisCluster], load_scripts: Callable[[], Awaitable[None]]) -> None:
        self._writer = writer
        self._load_scripts = load_scripts
        self._queued: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None
        self.pipelines = 0  # round trips that carried queued calls (for tests and the curious)

    def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one call for the next pipeline; its reply (or the error that stands for it)."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._queued.append((script, keys, args, reply))
        if self._sender is None:
            self._sender = loop.create_task(self._send_queued())
        return reply

    async def run(self, calls: list[ScriptCall]) -> list[Any]:
        """`calls` in one pipeline now (a cluster pipeline: one round trip per node); their replies,
        an exception in place of each that failed."""
        replies = await self._pipeline(calls)
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:
            await self._load_scripts()
            for i, reply in zip(again, await self._pipeline([calls[i] for i in again]), strict=True):
                replies[i] = reply
        return replies

    async def stop(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        self._fail_queued(BusUnavailableError("the Redis bus backend stopped"))

    async def _send_queued(self) -> None:
        """Send the calls queued now as one pipeline; repeat while more wait."""
        batch: list[_Queued] = []
        try:
            while self._queued:
                batch, self._queued = self._queued[:PIPELINE_CALLS], self._queued[PIPELINE_CALLS:]
                replies: list[Any]
                try:
                    replies = await self.run([(script, keys, args) for script, keys, args, _ in batch])
                    self.pipelines += 1
                except CONNECTION_ERRORS as exc:
                    replies = [exc] * len(batch)
                for (_, _, _, reply), result in zip(batch, replies, strict=True):
                    if reply.done():
                        continue
                    if isinstance(result, BaseException):
                        reply.set_exception(result)
                    else:
                        reply.set_result(result)
        finally:  # normally nothing is left; after a cancellation, nobody may wait forever
            self._sender = None
            self._queued = batch + self._queued
            self._fail_queued(BusUnavailableError("the Redis bus backend stopped"))

    async def _pipeline(self, calls: list[ScriptCall]) -> list[Any]:
        pipeline = self._writer().pipeline(transaction=False)
        for script, keys, args in calls:
            await script(keys=keys, args=args, client=pipeline)  # type: ignore[arg-type]  # a pipeline is a client
        return list(await pipeline.execute(raise_on_error=False))

    def _fail_queued(self, error: Exception) -> None:
        waiting, self._queued = self._queued, []
        for _, _, _, reply in waiting:
            if not reply.done():
                reply.set_exception(error)
