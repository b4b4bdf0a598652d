"""`RedisBackend`: the bus backend for a deployment of several workers and hosts on one Redis.

Sequencing, dedup and history live in Redis (see `unified.redis_scripts` for the layout and the
atomic append script); delivery to this worker's subscribers goes through its one `StreamListener`
(see `unified.redis_listener`), including the events this worker published itself.

Read-your-position. A position or replay read from Redis can be ahead of what the local reader
has delivered (the reader is a network hop behind). If `position()` answered `seq = 10` while
events 9 and 10 were still on their way, the connection manager would declare the client at 10
and then queue 9 and 10 live: duplicates after the ack. So every snapshot also reads the id of the
newest global entry, and `position`/`replay` return only once the local reader has delivered up to
it. Every event at or below the returned position has then been handed to `deliver` already
(either before the subscriber registered, or into its subscribe buffer, which the manager merges),
exactly as with the in-memory backend, where `append` delivers inline. The price is one reader
round trip (milliseconds) per subscribe; when the reader is cut off the wait is bounded and fails
with `BusUnavailableError` instead of answering a position the worker cannot honour.

Replays share their decoding. The clients of one topic coming back together (a restart) replay
the same history entries; `replay_cache` entries decoded once are reused while their stored
fields are unchanged (`unified.replay_cache`), so a storm decodes and encodes each missed event
once per topic instead of once per client. `replay_cache=0` decodes every replay afresh.

Publishing while Redis is unreachable raises `BusUnavailableError`. Retrying with the same
`event_id` is always safe: the dedup key remembers which append published the id, so a retry of
an append whose reply was lost still reports True, and the event is delivered once.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import AsyncScript

from wsmigrate.metrics import WsMetrics
from wsmigrate.unified.backend import Deliver, Wants
from wsmigrate.unified.errors import BusUnavailableError
from wsmigrate.unified.events import Event
from wsmigrate.unified.history import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL_S, new_epoch
from wsmigrate.unified.publication import Ingress, Position, Publication
from wsmigrate.unified.redis_listener import CONNECTION_ERRORS, OnDiscontinuity, StreamListener
from wsmigrate.unified.redis_scripts import (
    APPEND,
    F_EVENT,
    F_TS,
    POSITIONS,
    SNAPSHOT,
    Keys,
    decode_publication,
    encode_event,
    entry_fields,
    parse_id,
)
from wsmigrate.unified.replay_cache import DEFAULT_CAPACITY, DecodedEntries

__all__ = ["BusUnavailableError", "RedisBackend", "split_bus_url"]

DEFAULT_PREFIX = "wsmigrate"
DEFAULT_DEDUP_WINDOW_S = 300.0
DEFAULT_EVENTS_MAXLEN = 100_000
DEFAULT_TOPIC_TTL_S = 86_400.0
DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
DEFAULT_STALE_AFTER_S = 3.5
DEFAULT_SOCKET_TIMEOUT_S = 3.0
DEFAULT_CATCH_UP_TIMEOUT_S = 5.0
_INGRESS_MEMORY = 10_000
APPEND_PIPELINE = 500  # appends per pipeline (one round trip)
_T = TypeVar("_T")


def split_bus_url(url: str) -> tuple[str, str | None]:
    """Split our `prefix` query parameter off a bus URL (redis-py rejects parameters it does not know).

    `redis://host:6379/0?prefix=staging` lets workers configured only through `WSMIGRATE_BUS_URL`
    share a Redis with other deployments (and tests with each other).
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for name, value in query if name == "prefix"), None)
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix or None


@dataclass(frozen=True, slots=True)
class _Snapshot:
    incarnation: str
    epoch: str
    seq: int
    last_id: str
    now_ms: int
    entries: list[tuple[str, dict[str, str]]]


class RedisBackend:
    """Sequencing and history in Redis Streams; one reader per worker for delivery."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str | None = None,
        history_size: int = DEFAULT_HISTORY_SIZE,
        history_ttl_s: float = DEFAULT_HISTORY_TTL_S,
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        topic_ttl_s: float = DEFAULT_TOPIC_TTL_S,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
        catch_up_timeout_s: float = DEFAULT_CATCH_UP_TIMEOUT_S,
        metrics: WsMetrics | None = None,
        on_discontinuity: OnDiscontinuity | None = None,
        worker_id: str | None = None,
        skip_unwanted: bool = True,
        read_interval_s: float = 0.0,
        replay_cache: int = DEFAULT_CAPACITY,
    ) -> None:
        if history_size < 0 or history_ttl_s < 0 or dedup_window_s <= 0 or events_maxlen < 1:
            raise ValueError("history, dedup and stream bounds must be positive")
        if heartbeat_interval_s <= 0 or stale_after_s <= heartbeat_interval_s:
            raise ValueError("stale_after_s must exceed a positive heartbeat_interval_s")
        self.url, url_prefix = split_bus_url(url)
        self.keys = Keys(prefix or url_prefix or DEFAULT_PREFIX)
        self.history_size = history_size
        self.history_ttl_s = history_ttl_s
        self.dedup_window_s = dedup_window_s
        self.events_maxlen = events_maxlen
        self.topic_ttl_s = max(topic_ttl_s, history_ttl_s)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.stale_after_s = stale_after_s
        self.socket_timeout_s = socket_timeout_s
        self.catch_up_timeout_s = catch_up_timeout_s
        self.metrics = metrics
        self.on_discontinuity = on_discontinuity
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.skip_unwanted = skip_unwanted
        if read_interval_s < 0:
            raise ValueError("read_interval_s must not be negative")
        self.read_interval_s = read_interval_s
        self.decoded = DecodedEntries(replay_cache)  # what concurrent replays of a topic share
        self.listener: StreamListener | None = None
        self._writer: Redis | None = None
        self._reader: Redis | None = None
        self._append: AsyncScript | None = None
        self._snapshot_script: AsyncScript | None = None
        self._positions_script: AsyncScript | None = None
        self._ingress: OrderedDict[str, int] = OrderedDict()
        # appends waiting for the next pipeline: (script, keys, args, reply)
        self._appends: list[tuple[AsyncScript, list[str], list[Any], asyncio.Future[Any]]] = []
        self._appender: asyncio.Task[None] | None = None
        self.append_pipelines = 0  # round trips that carried appends (for tests and the curious)

    @property
    def reader_client_name(self) -> str:
        """The CLIENT SETNAME of this worker's reader connection (operators and tests find it by it)."""
        return f"{self.keys.prefix}:reader:{self.worker_id}"

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, deliver: Deliver, wants: Wants | None = None) -> None:
        """Connect, position the reader at the stream's end, and return once events flow.

        With `wants` (and `skip_unwanted`, the default) the reader skips, undecoded, the entries
        nothing on this worker needs (see `unified.redis_listener`)."""
        block_ms = int(self.heartbeat_interval_s * 1000)
        # Clients are made here, on the loop that will use them. The writer retries a lost
        # connection once (safe: appends are idempotent by event id); the reader never retries
        # inside redis-py, because its own loop must see every failure to resync and report it.
        self._writer = Redis.from_url(
            self.url, decode_responses=True, socket_timeout=self.socket_timeout_s,
            socket_connect_timeout=self.socket_timeout_s, client_name=f"{self.keys.prefix}:writer:{self.worker_id}",
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
        )
        self._reader = Redis.from_url(
            self.url, single_connection_client=True, decode_responses=True,
            socket_timeout=block_ms / 1000 + self.socket_timeout_s, socket_connect_timeout=self.socket_timeout_s,
            client_name=self.reader_client_name, retry=Retry(NoBackoff(), 0),
        )
        self._append = self._writer.register_script(APPEND)
        self._snapshot_script = self._writer.register_script(SNAPSHOT)
        self._positions_script = self._writer.register_script(POSITIONS)
        self.listener = StreamListener(
            self._reader, self._writer, self.keys, worker_id=self.worker_id, decode=self._decode,
            events_maxlen=self.events_maxlen, heartbeat_interval_s=self.heartbeat_interval_s,
            stale_after_s=self.stale_after_s, block_ms=block_ms, metrics=self.metrics,
            stop_timeout_s=block_ms / 1000 + self.socket_timeout_s + 1,
            on_discontinuity=self.on_discontinuity,
            wants=wants if self.skip_unwanted else None, read_interval_s=self.read_interval_s,
        )
        try:
            await self.listener.start(deliver, timeout=self.catch_up_timeout_s)
        except BusUnavailableError:
            await self._close_clients()
            raise

    async def stop(self) -> None:
        if self._appender is not None:
            self._appender.cancel()
            await asyncio.gather(self._appender, return_exceptions=True)
        self._fail_appends(BusUnavailableError("the Redis bus backend stopped"))
        if self.listener is not None:
            await self.listener.stop()
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self._reader, self._writer):
            if client is not None:
                await client.aclose()
        self._reader = self._writer = None
        self._append = self._snapshot_script = self._positions_script = None

    def healthy(self) -> bool:
        return self.listener is not None and self.listener.healthy()

    # -- publishing ------------------------------------------------------------------------------

    async def append(self, event: Event, topics: Sequence[str], ingress: Ingress) -> bool:
        script = self._require(self._append)
        k = self.keys
        nonce = secrets.token_hex(8)
        keys = [k.dedup(event.event_id), k.events, k.incarnation]
        for topic in topics:
            keys += [k.topic(topic), k.history(topic)]
        args: list[Any] = [
            nonce, _ms(self.dedup_window_s), self.events_maxlen, self.history_size, _ms(self.history_ttl_s),
            _ms(self.topic_ttl_s), new_epoch() + new_epoch(), encode_event(event), ingress.to_json(),
            event.type, *topics, *(new_epoch() for _ in topics),
        ]
        self._remember_ingress(event.event_id)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._appends.append((script, keys, args, reply))
        if self._appender is None:
            self._appender = asyncio.get_running_loop().create_task(self._send_appends())
        try:
            accepted, detail = await reply
        except CONNECTION_ERRORS as exc:
            raise BusUnavailableError(f"cannot publish {event.event_id} on the Redis bus: {exc!r}") from exc
        # A duplicate whose dedup key holds our own nonce is a retried append that did go through.
        return int(accepted) == 1 or str(detail) == nonce

    async def _send_appends(self) -> None:
        """Send the appends waiting now as one pipeline, one round trip for all; repeat while more wait.

        Appends are queued in call order and each pipeline runs in order, after the previous one
        returned, so the global stream keeps the order in which `append` was called. Concurrent
        publishers therefore share round trips instead of queueing behind each other's.
        """
        batch: list[tuple[AsyncScript, list[str], list[Any], asyncio.Future[Any]]] = []
        try:
            while self._appends:
                batch, self._appends = self._appends[:APPEND_PIPELINE], self._appends[APPEND_PIPELINE:]
                replies: list[Any]
                try:
                    pipeline = self._require(self._writer).pipeline(transaction=False)
                    for script, keys, args, _ in batch:
                        await script(keys=keys, args=args, client=pipeline)
                    self.append_pipelines += 1
                    replies = await pipeline.execute(raise_on_error=False)
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
            self._appender = None
            self._appends = batch + self._appends
            self._fail_appends(BusUnavailableError("the Redis bus backend stopped"))

    def _fail_appends(self, error: Exception) -> None:
        waiting, self._appends = self._appends, []
        for _, _, _, reply in waiting:
            if not reply.done():
                reply.set_exception(error)

    def _remember_ingress(self, event_id: str) -> None:
        """Keep the local ingress time so latency covers the bus round trip for local publishes."""
        if event_id not in self._ingress:
            self._ingress[event_id] = time.perf_counter_ns()
            if len(self._ingress) > _INGRESS_MEMORY:
                self._ingress.popitem(last=False)

    def _decode(self, entry_id: str, fields: Mapping[str, str]) -> Publication:
        publication = decode_publication(fields)
        ingress = self._ingress.pop(publication.event.event_id, None)
        if ingress is not None:
            publication.ingress_ns = ingress
        return publication

    # -- history ---------------------------------------------------------------------------------

    async def replay(self, topic: str, since: Position) -> list[Publication] | None:
        if since.seq < 0:
            return None
        # With the id of the client's last event, its entry is read too: the replay goes on only if
        # that event is still at `seq`. A Redis restored from an older snapshot keeps the epochs and
        # numbers later events from an older `seq` again; the numbers alone would look continuous.
        proven = since.event_id is not None and since.seq > 0
        first = (since.seq if proven else since.seq + 1) if self.history_size > 0 else 0
        snapshot = await self._snapshot(topic, first, extra=1 if proven else 0)
        if since.epoch != snapshot.epoch or since.seq > snapshot.seq:
            return None
        missing = snapshot.seq - since.seq
        if missing > self.history_size:
            return None
        entries = snapshot.entries
        if proven:
            if not entries or parse_id(entries[0][0]) != (since.seq, 0) or \
                    _event_id_of(entries[0][1]) != since.event_id:
                return None  # that event is gone (trimmed, expired) or another one holds its place
            entries = entries[1:]
        entries = entries[:missing]
        if missing and (
            len(entries) < missing
            or parse_id(entries[0][0]) != (since.seq + 1, 0)
            or parse_id(entries[-1][0]) != (snapshot.seq, 0)
            or int(entries[0][1][F_TS]) < snapshot.now_ms - _ms(self.history_ttl_s)
        ):
            return None  # trimmed or expired: never a partial replay
        publications = [self.decoded.publication(topic, entry_id, fields) for entry_id, fields in entries]
        await self._caught_up(snapshot)
        return publications

    async def position(self, topic: str) -> Position:
        snapshot = await self._snapshot(topic, 0)
        await self._caught_up(snapshot)
        return Position(snapshot.epoch, snapshot.seq)

    async def positions(self, topics: Sequence[str]) -> dict[str, Position]:
        if not topics:
            return {}
        script = self._require(self._positions_script)
        keys = [key for topic in topics for key in (self.keys.topic(topic), self.keys.history(topic))]
        args: list[Any] = [_ms(self.topic_ttl_s), *(new_epoch() for _ in topics)]
        try:
            reply = await script(keys=keys, args=args)
        except CONNECTION_ERRORS as exc:
            raise BusUnavailableError(f"cannot read positions from the Redis bus: {exc!r}") from exc
        return {topic: Position(str(epoch), int(seq)) for topic, (epoch, seq) in zip(topics, reply, strict=True)}

    async def _snapshot(self, topic: str, first: int, *, extra: int = 0) -> _Snapshot:
        script = self._require(self._snapshot_script)
        k = self.keys
        keys = [k.incarnation, k.events, k.topic(topic), k.history(topic)]
        args: list[Any] = [new_epoch() + new_epoch(), new_epoch(), _ms(self.topic_ttl_s), first,
                           max(self.history_size, 1) + extra]
        try:
            incarnation, epoch, seq, last_id, now_ms, entries = await script(keys=keys, args=args)
        except CONNECTION_ERRORS as exc:
            raise BusUnavailableError(f"cannot read {topic} from the Redis bus: {exc!r}") from exc
        return _Snapshot(
            incarnation=str(incarnation), epoch=str(epoch), seq=int(seq), last_id=str(last_id),
            now_ms=int(now_ms), entries=[(str(entry_id), entry_fields(raw)) for entry_id, raw in entries],
        )

    async def _caught_up(self, snapshot: _Snapshot) -> None:
        listener = self._require(self.listener)
        await listener.caught_up(snapshot.incarnation, snapshot.last_id, self.catch_up_timeout_s)

    @staticmethod
    def _require(value: _T | None) -> _T:
        if value is None:
            raise BusUnavailableError("the Redis bus backend is not started")
        return value


def _event_id_of(fields: Mapping[str, str]) -> str | None:
    try:
        value = json.loads(fields[F_EVENT]).get("event_id")
    except (KeyError, ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
