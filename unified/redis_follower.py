"""The pub/sub reader of one shard for a worker that follows topics (`?delivery=topics`).

Why: with the global stream (`unified.redis_listener`) every worker receives every entry, so its
cost has a floor set by the whole deployment's traffic. Here Redis pushes a worker only what it
follows, and a worker holding the subscribers of half the topics receives half the events.

How an event gets here. The append script publishes each entry on the channel of each of its
topics and on its type's channel (`unified.redis_scripts`, Channels). This reader subscribes to the
channels of what something on this worker follows: the topics its connections follow
(`follow`/`unfollow`, from `EventBus.follow`) and the event types its handlers and typed sinks need
(`follow_types`). Changes are coalesced and sent by one task, so a topic that moves from one index
of the connection manager to another in one step never leaves Redis. An entry published on two
followed channels is pushed twice, back to back (one script), and entry ids only grow on a shard's
stream: a push whose id is not above the last one delivered is that copy, and is dropped.

Read-your-position. `confirmed(topic)` returns once Redis confirmed the topic's subscription;
the backend then reads the topic's position, and `caught_up` sends a `PING` on this connection and
waits for its `PONG`. Redis answers a connection in order, so every entry numbered at or below the
position was pushed (and delivered here) before the `PONG`: the connection manager merges held
events and replay exactly as with the stream reader.

Resuming, or a gap reported, never silence. Pub/sub delivers at most once: a connection lost (or
closed by Redis for a full output buffer, or a shard channel Redis unsubscribed because its slot
moved) loses what was pushed meanwhile. The shard's global stream still holds it, so after a
reconnect the reader holds the new connection's pushes until every channel is confirmed again,
then reads the stream (`XRANGE`) from the last entry it delivered and delivers the entries of
what it follows, then the held pushes (copies dropped by entry id, as above): the same events,
once, in order, with no socket closed. The stream also holds what was appended before a channel
was followed, which a subscriber already had from its replay: a push read after a channel's
confirmation was appended after its follow, so are all entries after it, and each channel
remembers the last entry delivered when it was confirmed (`_joined_at`). An entry of a channel
confirmed since the last delivered entry cannot be placed, and is a gap. So are a stream that no
longer holds the last delivered entry (trimmed past it, or Redis lost its data), and a reconnect
before anything was delivered: each a discontinuity (`on_discontinuity("gap")`). A followed
topic whose `seq` does not follow on is one too, and the seqs are checked across a resume as
well; clients then resubscribe `since` their positions and recover from the topics' history.
A Redis that lost its data shows a new incarnation in the next push or heartbeat (`"reset"`).

Liveness is end to end, as with the stream reader: the worker publishes its heartbeat on its own
beat channel (the SYNC script), and counts itself live only while those come back here.

Reads. After a read that found pushes, the next one waits until `read_interval_s` has passed since
it (`WSMIGRATE_BUS_READ_INTERVAL_MS`), so that under steady traffic one wake-up takes what arrived
meanwhile; a quiet connection is read as soon as a push arrives.

The connection is redis-py's plain `Connection` (its handshake, AUTH and TLS) driven directly: no
automatic reconnect or resubscribe, which would hide a gap. Every command is sent only while the
connection this reader opened is still connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from wsmigrate.metrics import WsMetrics
from wsmigrate.unified.bus_reader import BusReader, OnDiscontinuity
from wsmigrate.unified.errors import BusUnavailableError
from wsmigrate.unified.history import new_epoch
from wsmigrate.unified.redis_channels import ChannelSubscriptions, PubSubCommands, batches
from wsmigrate.unified.redis_listener import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    CONNECTION_ERRORS,
    READ_BATCH,
    Decode,
    Deliver,
    Relocate,
)
from wsmigrate.unified.redis_scripts import (
    F_HEARTBEAT,
    F_INCARNATION,
    F_TOPICS,
    F_TYPE,
    PUSH_SEPARATOR,
    SYNC,
    Keys,
    StreamId,
    entry_fields,
    parse_id,
    push_fields,
)

log = logging.getLogger(__name__)

class TopicFollower(BusReader):
    """Follows the channels of one shard for one worker (module docstring)."""

    def __init__(
        self,
        client: Redis,
        writer: Redis,
        keys: Keys,
        *,
        worker_id: str,
        decode: Decode,
        heartbeat_interval_s: float,
        stale_after_s: float,
        stop_timeout_s: float,
        sharded_channels: bool,
        metrics: WsMetrics | None = None,
        on_discontinuity: OnDiscontinuity | None = None,
        read_interval_s: float = 0.0,
        on_liveness: Callable[[], None] | None = None,
        relocate: Relocate | None = None,
    ) -> None:
        super().__init__(worker_id=worker_id, stale_after_s=stale_after_s, on_liveness=on_liveness,
                         on_discontinuity=on_discontinuity)
        self._client = client  # its pool makes this reader's connections (never used for commands)
        self._writer = writer
        self.keys = keys
        self._decode = decode
        self.heartbeat_interval_s = heartbeat_interval_s
        self.stop_timeout_s = stop_timeout_s
        self._commands = PubSubCommands(sharded_channels)
        self.metrics = metrics
        self.read_interval_s = read_interval_s
        self._relocate = relocate
        self._sync: AsyncScript = writer.register_script(SYNC)
        self._beat_channel = keys.beat_channel(worker_id)
        self._topic_prefix = keys.topic_channel("")
        self._channels = ChannelSubscriptions(always=[self._beat_channel])
        self._gauged = 0  # how many asked channels `wsmigrate_bus_followed_channels` counts now
        self._confirm_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._live_topics: set[str] = set()  # confirmed: their `seq` must follow on
        self._pings: deque[asyncio.Future[None]] = deque()
        self._changed = asyncio.Event()
        self._sending = asyncio.Lock()  # one diff at a time: commands reach Redis in decision order
        self._conn: AbstractConnection | None = None
        self._deliver: Deliver | None = None
        self._incarnation: str | None = None
        self._last_key: StreamId = (0, 0)
        self._last_head = ""  # the last delivered entry's id and separator: how its copies start
        self._next_read_at = 0.0
        self._holding: list[str] | None = None  # pushes held while resuming after a reconnect
        # channel -> the last entry delivered when its subscription was confirmed (module docstring)
        self._joined_at: dict[str, StreamId] = {}
        self.reads = 0
        self.copies = 0  # pushes dropped as the copy of an entry already delivered
        self.reconnects = 0
        self.resumed = 0  # entries delivered from the stream after a reconnect

    # -- what to follow (called on the event loop, synchronously) ---------------------------------

    # Each records a change; the command task sends the changes since its last diff (O(changes)).

    def follow(self, topic: str) -> None:
        self._channels.want(self.keys.topic_channel(topic), True)
        self._changed.set()

    def unfollow(self, topic: str) -> None:
        self._channels.want(self.keys.topic_channel(topic), False)
        self._changed.set()

    def follow_types(self, event_types: Iterable[str]) -> None:
        self._channels.want_types({self.keys.type_channel(t) for t in event_types})
        self._changed.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, deliver: Deliver, timeout: float) -> None:
        """Connect, subscribe, and return once an own heartbeat came back through the connection."""
        self._deliver = deliver
        self._started_at = time.monotonic()
        try:
            self._incarnation = await self._beat(heartbeat=False)
            await self._connect()
        except CONNECTION_ERRORS as exc:
            raise BusUnavailableError(f"cannot reach the Redis bus: {exc}") from exc
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_forever(), name=f"bus-follower-{self.worker_id}"),
            loop.create_task(self._command_forever(), name=f"bus-follower-commands-{self.worker_id}"),
            loop.create_task(self._beat_forever(), name=f"bus-follower-heartbeat-{self.worker_id}"),
        ]
        if not await self._first_beat(timeout):
            await self.stop()
            raise BusUnavailableError(f"the bus follower did not see its own heartbeat within {timeout}s")

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=self.stop_timeout_s)
            await asyncio.gather(*done, return_exceptions=True)
            if pending:
                log.warning("bus follower tasks still running after %.1fs: %s", self.stop_timeout_s, pending)
        self._tasks = []
        await self._drop_connection()
        self._channels.reset()
        self._gauge_channels()
        self._deliver = None
        self._fail_waiters("the bus is stopping")
        self._refresh()

    # -- liveness --------------------------------------------------------------------------------

    def _reading(self) -> bool:
        return self._conn is not None

    async def _beat(self, *, heartbeat: bool) -> str:
        """Run SYNC (with a heartbeat pushed on the beat channel): the dataset's incarnation."""
        keys = [self.keys.incarnation, self.keys.events, self.keys.worker(self.worker_id)]
        args: list[Any] = [new_epoch() + new_epoch(), self.worker_id if heartbeat else "", repr(time.monotonic()),
                           1, int(self.stale_after_s * 1000) + 1, self._beat_channel, self._commands.publish]
        incarnation, _, _ = await self._sync(keys=keys, args=args)
        return str(incarnation)

    async def _beat_forever(self) -> None:
        while True:
            self._keep_going()
            with contextlib.suppress(*CONNECTION_ERRORS):
                await asyncio.wait_for(self._beat(heartbeat=True), self.heartbeat_interval_s)
            self._refresh()
            await asyncio.sleep(self.heartbeat_interval_s)

    # -- the connection --------------------------------------------------------------------------

    async def _connect(self) -> None:
        """A new connection, subscribed to everything wanted now (confirmations come as pushes)."""
        if self._relocate is not None:
            moved = await self._relocate()
            if moved is not None:
                self._client, self._writer = moved
                self._sync = self._writer.register_script(SYNC)
                log.warning("bus channels of %s moved to another node; following them there", self.keys.base)
        conn: AbstractConnection = self._client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        await conn.connect()  # type: ignore[no-untyped-call]
        self._conn = conn
        self._live_topics = set()
        self._channels.reset()  # a new connection follows nothing yet
        self._gauge_channels()
        await self._send_changes()

    def _gauge_channels(self) -> None:
        asked = len(self._channels.asked)
        if self.metrics is not None and asked != self._gauged:
            self.metrics.bus_followed_channels.inc(asked - self._gauged)
            self._gauged = asked

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        for future in self._pings:
            if not future.done():
                future.set_exception(BusUnavailableError("the bus follower lost its Redis connection"))
        self._pings.clear()
        if conn is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.disconnect(nowait=True)

    async def _send(self, *args: str) -> None:
        """Send on this reader's connection only while it is connected (redis-py would reconnect)."""
        conn = self._conn
        if conn is None or not conn.is_connected:
            raise RedisConnectionError("the bus follower's connection is closed")
        await conn.send_command(*args, check_health=False)

    async def _send_changes(self) -> None:
        async with self._sending:
            await self._send_diff()

    async def _send_diff(self) -> None:
        joining, leaving = self._channels.diff()
        self._gauge_channels()
        prefix = self._topic_prefix
        for channel in leaving:
            self._joined_at.pop(channel, None)
            if channel.startswith(prefix):
                topic = channel[len(prefix):]
                self._live_topics.discard(topic)
                self._topic_seqs.pop(topic, None)
        for batch in batches(leaving):
            await self._send(self._commands.unsubscribe, *batch)
        for batch in batches(joining):
            await self._send(self._commands.subscribe, *batch)

    async def _command_forever(self) -> None:
        while True:
            await self._changed.wait()
            self._keep_going()
            self._changed.clear()
            if self._conn is None:
                continue  # the reader subscribes everything wanted when it reconnects
            try:
                await self._send_changes()
            except CONNECTION_ERRORS as exc:
                log.debug("bus follower could not send its subscriptions: %r", exc)  # the reader reconnects

    # -- reading ---------------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            self._keep_going()
            try:
                if self._conn is None:
                    await self._connect()
                    self.reconnects += 1
                    delay = BACKOFF_MIN_S
                    await self._resume()
                await self._read_batch()
            except CONNECTION_ERRORS as exc:
                self._keep_going()
                if self._conn is not None:
                    log.warning("bus follower lost Redis (%r); reconnecting", exc)
                await self._drop_connection()
                self._refresh()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def _read_batch(self) -> None:
        wait = self._next_read_at - time.monotonic()
        if wait > 0:  # steady traffic: let the pushes of the interval gather (module docstring, Reads)
            await asyncio.sleep(wait)
            self._keep_going()
        conn = self._conn
        assert conn is not None
        self._on_reply(await conn.read_response(timeout=math.inf, push_request=True))
        started = time.monotonic()
        count = 1
        while count < READ_BATCH and await conn.can_read():
            self._on_reply(await conn.read_response(timeout=math.inf, push_request=True))
            count += 1
        self.reads += 1
        self._next_read_at = started + self.read_interval_s if count < READ_BATCH else 0.0
        self._report_gap()

    async def _resume(self) -> None:
        """After a reconnect: what was appended while nothing was followed, from the stream, then
        the pushes held meanwhile (module docstring, Resuming)."""
        if self._last_key == (0, 0):
            log.warning("bus follower reconnected before it delivered anything: clients resync")
            self._discontinuity("gap")
            return
        conn = self._conn
        assert conn is not None
        before, resumed_before = self._last_key, self.resumed
        self._holding = []
        try:
            due = self._channels.confirming()
            while self._channels.still_confirming(due):  # pushes after them are held
                self._on_reply(await conn.read_response(timeout=math.inf, push_request=True))
            resumed = await self._catch_up()
        finally:
            held, self._holding = self._holding, None
        if resumed:
            log.warning("bus follower reconnected and resumed from the stream after %s (%d entries read back)",
                        self._last_id_text(before), self.resumed - resumed_before)
        else:
            log.warning("bus follower reconnected after its stream moved past it: clients resync")
            self._discontinuity("gap")
            self._topic_seqs.clear()
        for data in held:
            self._on_push(data)
        self._report_gap()

    @staticmethod
    def _last_id_text(key: StreamId) -> str:
        return f"{key[0]}-{key[1]}"

    async def _catch_up(self) -> bool:
        """Deliver the stream's entries after the last one delivered that match what this reader
        follows; False if it cannot (module docstring, Resuming): the stream no longer holds that
        entry, or an entry is of a channel followed since it, which may predate the follow."""
        since = self._last_key
        start = self._last_id_text(since)
        stream = self.keys.events
        if not await self._writer.xrange(stream, start, start):
            return False
        while True:
            self._keep_going()
            entries: Any = await self._writer.xrange(stream, "(" + start, "+", count=READ_BATCH)
            for entry_id, raw in entries:
                start = str(entry_id)
                fields = entry_fields(raw)
                if F_HEARTBEAT in fields:
                    continue
                channels = self._channels_of(fields)
                if not channels:
                    continue
                if any(self._joined_at.get(channel, since) >= since for channel in channels):
                    return False  # followed since the last delivery: was this entry before or after?
                self.resumed += 1
                if self.metrics is not None:
                    self.metrics.batch.add(self.metrics.bus_resumed_entries)
                self._take(start, parse_id(start), fields)
            if len(entries) < READ_BATCH:
                return True

    def _channels_of(self, fields: dict[str, str]) -> list[str]:
        """The channels asked on this connection that an entry was (or would have been) pushed on."""
        asked = self._channels.asked
        found = [self._topic_prefix + topic for topic in _topics(fields) if self._topic_prefix + topic in asked]
        event_type = fields.get(F_TYPE)
        if event_type is None:  # written before entries carried their type: every followed topic's
            return found
        type_channel = self.keys.type_channel(event_type)
        return [*found, type_channel] if type_channel in asked else found

    def _on_reply(self, reply: Any) -> None:
        if reply == "PONG":  # RESP3 answers a PING plainly, RESP2 as ["pong", ""] in subscribed mode
            self._ponged()
            return
        if not isinstance(reply, list) or not reply:
            log.warning("unexpected reply on the bus follower's connection: %r", reply)
            return
        kind, commands = reply[0], self._commands
        if kind == commands.message:
            channel, data = reply[1], reply[2]
            if channel == self._beat_channel:
                self._on_beat(data)
            elif self._holding is not None:
                self._holding.append(data)
            else:
                self._on_push(data)
        elif kind == "pong":
            self._ponged()
        elif kind == commands.subscribed:
            self._confirmed(reply[1])
        elif kind == commands.unsubscribed:
            channel = reply[1]
            if not self._channels.unsubscribed(channel):
                # Redis dropped a shard channel (its slot moved): what it carried meanwhile is lost
                raise RedisConnectionError(f"Redis unsubscribed {channel} (its slot moved)")
        else:
            log.warning("unexpected push on the bus follower's connection: %r", reply[:2])

    def _ponged(self) -> None:
        if self._pings:
            future = self._pings.popleft()
            if not future.done():
                future.set_result(None)

    def _confirmed(self, channel: str) -> None:
        if not self._channels.subscribed(channel):
            return
        if self._holding is None:  # a new follow, not a resume's: where this reader stood then
            self._joined_at[channel] = self._last_key
        if channel.startswith(self._topic_prefix) and channel in self._channels.asked:
            topic = channel[len(self._topic_prefix):]
            self._live_topics.add(topic)
            if self._holding is None:  # a new follow: its first push sets where it stands
                self._topic_seqs.pop(topic, None)
        for future in self._confirm_waiters.pop(channel, ()):
            if not future.done():
                future.set_result(None)

    def _on_beat(self, data: str) -> None:
        at, _, incarnation = data.partition(PUSH_SEPARATOR)
        if incarnation and incarnation != self._incarnation:
            self._switch_incarnation(incarnation)
        with contextlib.suppress(ValueError):
            self._own_beat(float(at))

    def _on_push(self, data: str) -> None:
        if self._last_head and data.startswith(self._last_head):  # the copy just after its original
            self.copies += 1
            return
        try:
            entry_id, fields = push_fields(data)
            key = parse_id(entry_id)
        except ValueError as exc:
            log.error("skipping malformed bus push: %r", exc)
            return
        self._take(entry_id, key, fields)

    def _take(self, entry_id: str, key: StreamId, fields: dict[str, str]) -> None:
        """Deliver one entry, pushed or read back from the stream, unless it was delivered already."""
        incarnation = fields.get(F_INCARNATION)
        if incarnation is not None and incarnation != self._incarnation:
            self._switch_incarnation(incarnation)
        if key <= self._last_key:
            self.copies += 1
            return
        self._last_key = key
        self._last_head = entry_id + PUSH_SEPARATOR
        try:
            publication = self._decode(entry_id, fields)
        except (ValueError, KeyError) as exc:
            log.error("skipping malformed bus entry %s: %r", entry_id, exc)
            return
        self._check_continuity(publication, self._live_topics)  # only followed topics must follow on
        deliver = self._deliver
        if deliver is None:
            return
        try:
            deliver(publication)
        except Exception:  # broad on purpose (logged): one bad event must not kill the worker's only reader
            log.exception("delivering bus entry %s failed", entry_id)

    def _switch_incarnation(self, incarnation: str) -> None:
        old, self._incarnation = self._incarnation, incarnation
        self._last_key, self._last_head = (0, 0), ""
        self._topic_seqs.clear()
        self._lost_data(old, incarnation)

    # -- read-your-position ------------------------------------------------------------------------

    async def confirmed(self, topic: str, timeout: float) -> None:
        """Return once Redis confirmed the subscription of followed `topic` (at once if not followed)."""
        channel = self.keys.topic_channel(topic)
        channels = self._channels
        if channel not in channels.wanted or (channels.confirmed(channel) and self._conn is not None):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm_waiters.setdefault(channel, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise BusUnavailableError(f"Redis did not confirm the subscription of {topic} within {timeout}s") from exc

    async def caught_up(self, incarnation: str, timeout: float) -> None:
        """Return once everything pushed to this connection before now has been delivered (PING)."""
        if incarnation != self._incarnation:
            raise BusUnavailableError("the Redis bus lost its data")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings.append(future)  # before sending: the PONG may be read while the send drains
        try:
            await self._send("PING")
        except CONNECTION_ERRORS as exc:
            with contextlib.suppress(ValueError):  # never sent: no PONG will pop it
                self._pings.remove(future)
            raise BusUnavailableError(f"the bus follower cannot reach Redis: {exc!r}") from exc
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise BusUnavailableError(f"the bus follower got no PONG within {timeout}s") from exc

    def _fail_waiters(self, reason: str) -> None:
        for waiters in self._confirm_waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(BusUnavailableError(reason))
        self._confirm_waiters.clear()


def _topics(fields: dict[str, str]) -> list[str]:
    try:
        topics = json.loads(fields[F_TOPICS])
    except (KeyError, ValueError):
        return []  # the decoder reports it as malformed if it is delivered
    return [str(topic) for topic in topics] if isinstance(topics, list) else []
