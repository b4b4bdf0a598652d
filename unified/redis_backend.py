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

Shards. With `shards=K` (`?shards=K` in the bus URL) the bus is K independent sequencers, each
with its own stream, incarnation and topic keys under one cluster hash tag (`unified.shard_map`
says which topic is whose, `unified.redis_scripts` the key names), and this worker runs one
`StreamListener` per shard. With `cluster=True` (`?cluster=true`) the shards live on a Redis
Cluster: appends, snapshots and positions go through redis-py's cluster client (one script call
touches one shard, so one node), and each shard's reader connects to the node that owns the
shard's slot (`unified.redis_connections` makes the clients and follows a slot that moves; the
readers' liveness is summed up in `unified.shard_liveness`). Per-topic order, gapless `seq`,
replay, rollback detection (per shard) and read-your-position (the topic's shard's reader) hold
exactly as unsharded; order *across* shards is not defined, and an event whose topics fall in
several shards is one publication per shard (`Publication.part`, docs/protocol.md, "Sharded bus").

Delivery. By default (`delivery="stream"`) each worker reads its shards' global streams and skips
what nothing on it needs. With `delivery="topics"` (`?delivery=topics`) it reads none of them:
Redis pushes it the entries of the topics and event types it follows (`follow`, `follow_types`;
`unified.redis_follower`), so its cost follows its own subscriptions. Read-your-position holds
(the subscription is confirmed before the position is read, then a PING proves the pushes up to it
arrived), and so do per-topic order and replay; what pub/sub can lose is reported as a
discontinuity. Both kinds of worker can share one deployment: every append publishes its pushes.

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

from redis.commands.core import AsyncScript

from wsmigrate.metrics import WsMetrics
from wsmigrate.unified.backend import Deliver, Wants
from wsmigrate.unified.errors import BusUnavailableError
from wsmigrate.unified.events import Event
from wsmigrate.unified.history import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL_S, new_epoch
from wsmigrate.unified.publication import Ingress, Position, Publication
from wsmigrate.unified.redis_connections import BusConnections
from wsmigrate.unified.redis_follower import TopicFollower
from wsmigrate.unified.redis_listener import CONNECTION_ERRORS, OnDiscontinuity, StreamListener
from wsmigrate.unified.redis_pipeline import ScriptPipeline
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
from wsmigrate.unified.redis_url import bus_url_options, parse_flag
from wsmigrate.unified.replay_cache import DEFAULT_CAPACITY, DecodedEntries
from wsmigrate.unified.shard_liveness import DEFAULT_WINDOW_S, LivenessSummary
from wsmigrate.unified.shard_map import check_shards, shard_of, split_topics

__all__ = ["BusUnavailableError", "RedisBackend"]

DEFAULT_PREFIX = "wsmigrate"
DEFAULT_DEDUP_WINDOW_S = 300.0
DEFAULT_EVENTS_MAXLEN = 100_000
DEFAULT_TOPIC_TTL_S = 86_400.0
DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
DEFAULT_STALE_AFTER_S = 3.5
DEFAULT_SOCKET_TIMEOUT_S = 3.0
DEFAULT_CATCH_UP_TIMEOUT_S = 5.0
DELIVERIES = ("stream", "topics")  # how a worker receives events (module docstring, Delivery)
_INGRESS_MEMORY = 10_000
_T = TypeVar("_T")


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
        shards: int | None = None,
        cluster: bool | None = None,
        delivery: str | None = None,
    ) -> None:
        if history_size < 0 or history_ttl_s < 0 or dedup_window_s <= 0 or events_maxlen < 1:
            raise ValueError("history, dedup and stream bounds must be positive")
        if heartbeat_interval_s <= 0 or stale_after_s <= heartbeat_interval_s:
            raise ValueError("stale_after_s must exceed a positive heartbeat_interval_s")
        self.url, options = bus_url_options(url)
        self.keys = Keys(prefix or options.get("prefix") or DEFAULT_PREFIX)
        self.cluster = cluster if cluster is not None else parse_flag(options.get("cluster", "false"))
        if shards is None and "shards" in options:
            shards = int(options["shards"])
        if self.cluster and shards is None:
            raise ValueError("a Redis Cluster bus needs its shard count: shards=K (the same on every worker)")
        self.shards = None if shards is None else check_shards(shards)
        self.delivery = delivery or options.get("delivery", "stream")
        if self.delivery not in DELIVERIES:
            raise ValueError(f"delivery must be one of {', '.join(DELIVERIES)}, not {self.delivery!r}")
        self._publish = "SPUBLISH" if self.cluster else "PUBLISH"  # a cluster's shard channels
        # One `Keys` per shard (the unsharded layout is one shard with plain names)
        self.shard_keys = [self.keys] if self.shards is None else [
            Keys(self.keys.prefix, shard) for shard in range(self.shards)]
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
        self.listeners: list[StreamListener] = []  # one per shard, in shard order (delivery="stream")
        self.followers: list[TopicFollower] = []  # one per shard, in shard order (delivery="topics")
        self._followed: set[str] = set()
        self._followed_types: frozenset[str] = frozenset()
        self.connections = BusConnections(
            self.url, cluster=self.cluster, prefix=self.keys.prefix, worker_id=self.worker_id,
            socket_timeout_s=socket_timeout_s, read_block_ms=int(heartbeat_interval_s * 1000))
        # the liveness gauges: one listener's own, or the worst of a sharded bus's (summed up at most
        # every DEFAULT_WINDOW_S there, so that K listeners do not each compute it over all K)
        self._liveness = LivenessSummary(metrics, self._readers,
                                         window_s=0.0 if self.shards is None else DEFAULT_WINDOW_S)
        self._append: AsyncScript | None = None
        self._snapshot_script: AsyncScript | None = None
        self._positions_script: AsyncScript | None = None
        self._ingress: OrderedDict[str, int] = OrderedDict()
        # appends share round trips (`unified.redis_pipeline`); so do positions in several shards
        self._scripts = ScriptPipeline(self.connections.require_writer, self._load_scripts)

    def _readers(self) -> list[StreamListener] | list[TopicFollower]:
        return self.followers if self.delivery == "topics" else self.listeners

    @property
    def append_pipelines(self) -> int:
        """Round trips that carried appends (for tests and the curious)."""
        return self._scripts.pipelines

    @property
    def listener(self) -> StreamListener | None:
        """The reader of the first shard (the only one unsharded)."""
        return self.listeners[0] if self.listeners else None

    @property
    def reader_client_name(self) -> str:
        """The CLIENT SETNAME of this worker's reader connection (operators and tests find it by it)."""
        return self.shard_reader_name(0)

    def shard_reader_name(self, shard: int) -> str:
        """The CLIENT SETNAME of this worker's reader of `shard` (unsharded: of its one reader)."""
        return self.connections.reader_name(None if self.shards is None else shard)

    def shard_of(self, topic: str) -> int:
        return 0 if self.shards is None else shard_of(topic, self.shards)

    def _by_shard(self, topics: Sequence[str]) -> list[tuple[int, list[str]]]:
        """`topics` grouped by the shard that sequences them, the first topic's shard first."""
        return [(0, list(topics))] if self.shards is None else split_topics(topics, self.shards)

    def keys_of(self, topic: str) -> Keys:
        """The keys of the shard that sequences `topic`."""
        return self.shard_keys[self.shard_of(topic)]

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, deliver: Deliver, wants: Wants | None = None) -> None:
        """Connect, position the readers at their streams' ends, and return once events flow.

        With `wants` (and `skip_unwanted`, the default) the readers skip, undecoded, the entries
        nothing on this worker needs (see `unified.redis_listener`)."""
        block_ms = self.connections.read_block_ms
        self.listeners, self.followers = [], []  # a backend started again reads afresh
        try:
            writer = await self.connections.open()
            self._append = writer.register_script(APPEND)
            self._snapshot_script = writer.register_script(SNAPSHOT)
            self._positions_script = writer.register_script(POSITIONS)
            if self.cluster:  # a cluster pipeline does not load scripts itself: every primary gets them now
                await self._load_scripts()
            for shard, keys in enumerate(self.shard_keys):
                which = None if self.shards is None else shard
                reader, node_writer = self.connections.shard_clients(which, keys)
                if self.delivery == "topics":
                    self.followers.append(self._follower(which, keys, reader, node_writer, block_ms))
                    continue
                self.listeners.append(StreamListener(
                    reader, node_writer, keys, worker_id=self.worker_id, decode=self._decode,
                    events_maxlen=self.events_maxlen, heartbeat_interval_s=self.heartbeat_interval_s,
                    stale_after_s=self.stale_after_s, block_ms=block_ms, metrics=self.metrics,
                    stop_timeout_s=block_ms / 1000 + self.socket_timeout_s + 1,
                    on_discontinuity=self.on_discontinuity,
                    wants=wants if self.skip_unwanted else None, read_interval_s=self.read_interval_s,
                    on_liveness=self._liveness.report,
                    relocate=self.connections.relocator(which, keys),
                ))
            await asyncio.gather(*(reader.start(deliver, timeout=self.catch_up_timeout_s)
                                   for reader in self._readers()))
            self._liveness.flush()  # live from the first request on, gauges included
        except CONNECTION_ERRORS as exc:
            await self.stop()
            raise BusUnavailableError(f"cannot reach the Redis bus: {exc!r}") from exc
        except BusUnavailableError:
            await self.stop()
            raise

    def _follower(self, which: int | None, keys: Keys, client: Any, writer: Any, block_ms: int) -> TopicFollower:
        follower = TopicFollower(
            client, writer, keys, worker_id=self.worker_id, decode=self._decode,
            heartbeat_interval_s=self.heartbeat_interval_s, stale_after_s=self.stale_after_s,
            stop_timeout_s=block_ms / 1000 + self.socket_timeout_s + 1, sharded_channels=self.cluster,
            metrics=self.metrics, on_discontinuity=self.on_discontinuity, read_interval_s=self.read_interval_s,
            on_liveness=self._liveness.report, relocate=self.connections.relocator(which, keys))
        follower.follow_types(self._followed_types)
        for topic in self._followed:
            if self.keys_of(topic) == keys:
                follower.follow(topic)
        return follower

    # -- following (delivery="topics"; module docstring, Delivery) ---------------------------------

    def follow(self, topic: str) -> None:
        self._followed.add(topic)
        if self.followers:
            self.followers[self.shard_of(topic)].follow(topic)

    def unfollow(self, topic: str) -> None:
        self._followed.discard(topic)
        if self.followers:
            self.followers[self.shard_of(topic)].unfollow(topic)

    def follow_types(self, event_types: frozenset[str]) -> None:
        self._followed_types = event_types
        for follower in self.followers:
            follower.follow_types(event_types)

    async def _load_scripts(self) -> None:
        writer = self.connections.require_writer()
        for source in (APPEND, SNAPSHOT, POSITIONS):
            await writer.script_load(source)

    async def stop(self) -> None:
        await self._scripts.stop()
        await asyncio.gather(*(reader.stop() for reader in self._readers()))
        self._liveness.flush()  # the readers' last reports
        await self.connections.close()
        self._append = self._snapshot_script = self._positions_script = None

    def healthy(self) -> bool:
        readers = self._readers()
        return bool(readers) and all(reader.healthy() for reader in readers)

    # -- publishing ------------------------------------------------------------------------------

    async def append(self, event: Event, topics: Sequence[str], ingress: Ingress) -> bool:
        script = self._require(self._append)
        parts = self._by_shard(topics)
        nonce = secrets.token_hex(8)
        facts = ingress.to_json()
        replies: list[asyncio.Future[Any]] = []
        self._remember_ingress(event.event_id)
        for index, (shard, part_topics) in enumerate(parts):
            k = self.shard_keys[shard]
            stored = event if len(parts) == 1 else _part_of(event, part_topics)
            keys = [k.dedup(event.event_id), k.events, k.incarnation]
            for topic in part_topics:
                keys += [k.topic(topic), k.history(topic)]
            args: list[Any] = [
                nonce, _ms(self.dedup_window_s), self.events_maxlen, self.history_size, _ms(self.history_ttl_s),
                _ms(self.topic_ttl_s), new_epoch() + new_epoch(), encode_event(stored), facts,
                event.type, "" if len(parts) == 1 else str(index), self._publish, k.channels,
                *part_topics, *(new_epoch() for _ in part_topics),
            ]
            replies.append(self._scripts.call(script, keys, args))
        # Every part is awaited (none may be left unobserved); the event is published if any part
        # was: a retry after a partial failure appends the parts that are missing, once.
        results = await asyncio.gather(*replies, return_exceptions=True)
        published = False
        for result in results:
            if isinstance(result, CONNECTION_ERRORS):
                raise BusUnavailableError(f"cannot publish {event.event_id} on the Redis bus: {result!r}") from result
            if isinstance(result, BaseException):
                raise result
            accepted, detail = result
            # A duplicate whose dedup key holds our own nonce is a retried append that did go through.
            published = published or int(accepted) == 1 or str(detail) == nonce
        return published

    def _remember_ingress(self, event_id: str) -> None:
        """Keep the local ingress time so latency covers the bus round trip for local publishes."""
        if event_id not in self._ingress:
            self._ingress[event_id] = time.perf_counter_ns()
            if len(self._ingress) > _INGRESS_MEMORY:
                self._ingress.popitem(last=False)

    def _decode(self, entry_id: str, fields: Mapping[str, str]) -> Publication:
        publication = decode_publication(fields)
        # the parts of a split event share the ingress time: kept until the memory's bound drops it
        remembered = self._ingress.pop if publication.part is None else self._ingress.get
        ingress = remembered(publication.event.event_id, None)
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
        await self._caught_up(topic, snapshot)
        return publications

    async def position(self, topic: str) -> Position:
        snapshot = await self._snapshot(topic, 0)
        await self._caught_up(topic, snapshot)
        return Position(snapshot.epoch, snapshot.seq)

    async def positions(self, topics: Sequence[str]) -> dict[str, Position]:
        if not topics:
            return {}
        script = self._require(self._positions_script)
        groups = self._by_shard(topics)
        calls = [(script, _position_keys(self.shard_keys[shard], part), _position_args(self, part))
                 for shard, part in groups]
        try:  # one shard: one script call; several: one per shard, all in one pipeline
            replies = [await script(keys=calls[0][1], args=calls[0][2])] if len(calls) == 1 else \
                await self._scripts.run(calls)
        except CONNECTION_ERRORS as exc:
            raise BusUnavailableError(f"cannot read positions from the Redis bus: {exc!r}") from exc
        failed = next((reply for reply in replies if isinstance(reply, BaseException)), None)
        if failed is not None:
            raise BusUnavailableError(f"cannot read positions from the Redis bus: {failed!r}") from failed
        found = {topic: Position(str(epoch), int(seq))
                 for (_, part), reply in zip(groups, replies, strict=True)
                 for topic, (epoch, seq) in zip(part, reply, strict=True)}
        return {topic: found[topic] for topic in topics}

    async def _snapshot(self, topic: str, first: int, *, extra: int = 0) -> _Snapshot:
        script = self._require(self._snapshot_script)
        if self.followers:  # pushes of the topic must flow before its position is read (Delivery)
            await self.followers[self.shard_of(topic)].confirmed(topic, self.catch_up_timeout_s)
        k = self.keys_of(topic)
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

    async def _caught_up(self, topic: str, snapshot: _Snapshot) -> None:
        """Wait for the reader of `topic`'s shard (module docstring, Read-your-position)."""
        if self.followers:
            await self.followers[self.shard_of(topic)].caught_up(snapshot.incarnation, self.catch_up_timeout_s)
            return
        if not self.listeners:
            raise BusUnavailableError("the Redis bus backend is not started")
        listener = self.listeners[self.shard_of(topic)]
        await listener.caught_up(snapshot.incarnation, snapshot.last_id, self.catch_up_timeout_s)

    @staticmethod
    def _require(value: _T | None) -> _T:
        if value is None:
            raise BusUnavailableError("the Redis bus backend is not started")
        return value


def _part_of(event: Event, topics: list[str]) -> Event:
    """The event as one shard stores its part: addressed to that shard's topics only."""
    return event.model_copy(update={"topics": topics if len(topics) > 1 else None, "positions": None})


def _position_keys(keys: Keys, topics: Sequence[str]) -> list[str]:
    return [name for topic in topics for name in (keys.topic(topic), keys.history(topic))]


def _position_args(backend: RedisBackend, topics: Sequence[str]) -> list[Any]:
    return [_ms(backend.topic_ttl_s), *(new_epoch() for _ in topics)]


def _event_id_of(fields: Mapping[str, str]) -> str | None:
    try:
        value = json.loads(fields[F_EVENT]).get("event_id")
    except (KeyError, ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
