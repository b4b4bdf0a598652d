"""The Redis data layout of the bus: key names, the Lua scripts, and the entry codec.

Why Lua: sequencing must be atomic across workers. One script call deduplicates the event id,
numbers the event on each of its topics, appends it to each topic's history stream and to the one
global fan-out stream. Nothing can interleave, so per-topic `seq` has no gaps and the global
stream's order agrees with every topic's `seq` order: a reader that follows the global stream
delivers each topic in `seq` order.

Layout (`P` is the key prefix):

| key                  | type   | holds                                                           |
|----------------------|--------|-----------------------------------------------------------------|
| `P:incarnation`      | string | random id of this Redis dataset; a new one means the data was lost |
| `P:events`           | stream | every publication and heartbeat, in sequencing order (fan-out)  |
| `P:topic:{topic}`    | hash   | `epoch`, `seq` of the topic                                     |
| `P:history:{topic}`  | stream | the topic's recent publications, entry id `{seq}-0`             |
| `P:dedup:{event_id}` | string | nonce of the append that published the id (expires: dedup window) |
| `P:worker:{id}`      | string | last heartbeat of a worker (expires), for operators             |
| `P:ch:t:{topic}`     | channel | every publication of the topic, pushed (`push_fields`)         |
| `P:ch:y:{type}`      | channel | every publication of the event type, pushed                    |
| `P:ch:beat:{id}`     | channel | heartbeats of a worker that follows topics                     |

A topic's epoch is created with its hash, so a Redis that lost its data (or expired an idle topic)
hands out new epochs and clients asking with an old `since` get `recovered: false`. The history
stream is deleted whenever its hash is (re)created, so stale entries never mix with a new epoch.
On a sharded bus (`unified.shard_map`) every key exists once per shard, under the shard's hash
tag (`P:{s3}:events`, `P:{s3}:topic:{topic}`, ...; see `Keys`): a topic's keys and its shard's
stream and incarnation share a slot, so the scripts below run unchanged on one shard, on one node
of a Redis Cluster. Unsharded, keys are plain and the scripts assume a single Redis primary.

Channels. The append script publishes every entry on the channel of each of its topics and of its
type, whether or not any worker follows them (a channel nobody subscribes to costs Redis one
lookup), so workers reading the global stream and workers following topics
(`unified.redis_follower`) can share one deployment and switch one by one. On a cluster it uses
`SPUBLISH` (shard channels stay on the node of their slot) and the followers `SSUBSCRIBE`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wsmigrate.unified.events import Event
from wsmigrate.unified.publication import Ingress, Publication

StreamId = tuple[int, int]
ZERO_ID = "0-0"

# Fields of a publication entry (global and history streams alike). `y` (the event type) and `t`
# (its topics) are plain so that a reader can tell whether it needs an entry before decoding it.
F_EVENT, F_META, F_TOPICS, F_SEQS, F_EPOCHS, F_INCARNATION, F_TS = "e", "m", "t", "s", "p", "i", "ts"
F_TYPE = "y"
# On a sharded bus, an entry holding part of an event whose topics fall in several shards: the
# part's index (`0` holds the event's primary topic). Absent on an entry of a whole event.
F_PART = "x"
# Fields of a heartbeat entry (global stream only).
F_HEARTBEAT, F_AT = "hb", "at"

_ENSURE_INCARNATION = """
local incarnation = redis.call('GET', KEYS[INC])
if not incarnation then
  incarnation = ARGV[CAND]
  redis.call('SET', KEYS[INC], incarnation)
end
"""

_NOW_MS = """
local clock = redis.call('TIME')
local now_ms = string.format('%d', clock[1] * 1000 + math.floor(clock[2] / 1000))
"""

# KEYS: dedup, events, incarnation, then (topic hash, topic history) per topic.
# ARGV: nonce, dedup_ms, events_maxlen, history_maxlen, history_ttl_ms, topic_ttl_ms,
#       incarnation candidate, event json, ingress json, event type, part ('' for a whole event),
#       publish command (PUBLISH, or SPUBLISH on a cluster), channel prefix (`Keys.channels`),
#       then n topics, then n epoch candidates.
# Returns {1, global entry id} or {0, nonce of the append that already published the id}.
# The entry is also published on the channel of each of its topics and on its type's channel, as
# a push (`PUSH_SEPARATOR`-joined, `push_fields` reads it) for workers that follow topics.
APPEND = (
    """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[1]) or ''}
end
"""
    + _ENSURE_INCARNATION.replace("KEYS[INC]", "KEYS[3]").replace("ARGV[CAND]", "ARGV[7]")
    + _NOW_MS
    + """
local n = (#KEYS - 3) / 2
local topics, seqs, epochs = {}, {}, {}
for i = 1, n do
  local state, history = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local epoch = redis.call('HGET', state, 'epoch')
  if not epoch then
    epoch = ARGV[13 + n + i]
    redis.call('DEL', history)
    redis.call('HSET', state, 'epoch', epoch)
  end
  seqs[i] = redis.call('HINCRBY', state, 'seq', 1)
  redis.call('PEXPIRE', state, ARGV[6])
  topics[i] = ARGV[13 + i]
  epochs[i] = epoch
end
local topics_json, seqs_json, epochs_json = cjson.encode(topics), cjson.encode(seqs), cjson.encode(epochs)
local fields = {'e', ARGV[8], 'm', ARGV[9], 'y', ARGV[10], 't', topics_json, 's', seqs_json,
                'p', epochs_json, 'i', incarnation, 'ts', now_ms}
if ARGV[11] ~= '' then
  table.insert(fields, 'x')
  table.insert(fields, ARGV[11])
end
if tonumber(ARGV[4]) > 0 then
  for i = 1, n do
    local history = KEYS[3 + 2 * i]
    redis.call('XADD', history, 'MAXLEN', '~', ARGV[4], seqs[i] .. '-0', unpack(fields))
    redis.call('PEXPIRE', history, ARGV[5])
  end
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
local push = table.concat({id, ARGV[10], topics_json, seqs_json, epochs_json, incarnation, now_ms, ARGV[11],
                           ARGV[9], ARGV[8]}, '\\31')
for i = 1, n do
  redis.call(ARGV[12], ARGV[13] .. 't:' .. topics[i], push)
end
redis.call(ARGV[12], ARGV[13] .. 'y:' .. ARGV[10], push)
return {1, id}
"""
)

# KEYS: incarnation, events, topic hash, topic history.
# ARGV: incarnation candidate, epoch candidate, topic_ttl_ms, first seq to read (0: none), count.
# Returns {incarnation, epoch, seq, last global entry id, now_ms, history entries from first seq}.
SNAPSHOT = (
    _ENSURE_INCARNATION.replace("KEYS[INC]", "KEYS[1]").replace("ARGV[CAND]", "ARGV[1]")
    + """
local epoch = redis.call('HGET', KEYS[3], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[3], 'epoch', epoch, 'seq', 0)
end
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local seq = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0')
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
"""
    + _NOW_MS
    + """
local entries = {}
local first = tonumber(ARGV[4])
if first > 0 and first <= seq then
  entries = redis.call('XRANGE', KEYS[4], first .. '-0', '+', 'COUNT', ARGV[5])
end
return {incarnation, epoch, seq, last_id, now_ms, entries}
"""
)

# KEYS: (topic hash, topic history) per topic. ARGV: topic_ttl_ms, then one epoch candidate per topic.
# Returns {epoch, seq} per topic. A topic without a hash gets one (and a fresh history) here, so
# the epoch handed to a REST client is the one its next event is numbered in.
POSITIONS = """
local positions = {}
for i = 1, #KEYS / 2 do
  local state, history = KEYS[2 * i - 1], KEYS[2 * i]
  local epoch = redis.call('HGET', state, 'epoch')
  if not epoch then
    epoch = ARGV[1 + i]
    redis.call('DEL', history)
    redis.call('HSET', state, 'epoch', epoch, 'seq', 0)
  end
  redis.call('PEXPIRE', state, ARGV[1])
  positions[i] = {epoch, tonumber(redis.call('HGET', state, 'seq') or '0')}
end
return positions
"""

# KEYS: incarnation, events, worker key.
# ARGV: incarnation candidate, worker id ('' = no heartbeat), heartbeat time, events_maxlen, worker_ttl_ms,
#       then for a worker that follows topics: its beat channel and the publish command (else '', '').
# Returns {incarnation, last generated id, max deleted id} of the global stream. The heartbeat is an
# entry of the global stream, or a push `{time}<US>{incarnation}` on the worker's beat channel.
SYNC = (
    _ENSURE_INCARNATION.replace("KEYS[INC]", "KEYS[1]").replace("ARGV[CAND]", "ARGV[1]")
    + """
if ARGV[2] ~= '' then
  if ARGV[6] ~= '' then
    redis.call(ARGV[7], ARGV[6], ARGV[3] .. '\\31' .. incarnation)
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'hb', ARGV[2], 'at', ARGV[3], 'i', incarnation)
  end
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[5])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {incarnation, '0-0', '0-0'}
end
local info = redis.call('XINFO', 'STREAM', KEYS[2])
local last, deleted = '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
  if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
end
return {incarnation, last, deleted}
"""
)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (one deployment, or one test), of one shard when `shard` is set.

    A shard's names carry the cluster hash tag `{s<k>}` after the prefix (`P:{s3}:events`), so
    every key of the shard is in one slot: its scripts touch one node, atomically.
    """

    prefix: str
    shard: int | None = None

    @property
    def base(self) -> str:
        return self.prefix if self.shard is None else f"{self.prefix}:{{s{self.shard}}}"

    @property
    def events(self) -> str:
        return f"{self.base}:events"

    @property
    def incarnation(self) -> str:
        return f"{self.base}:incarnation"

    def dedup(self, event_id: str) -> str:
        return f"{self.base}:dedup:{event_id}"

    def topic(self, topic: str) -> str:
        return f"{self.base}:topic:{topic}"

    def history(self, topic: str) -> str:
        return f"{self.base}:history:{topic}"

    def worker(self, worker_id: str) -> str:
        return f"{self.base}:worker:{worker_id}"

    # Pub/sub channels (workers that follow topics, `unified.redis_follower`): under the shard's
    # hash tag too, so that a cluster's SPUBLISH from the append script stays in the script's slot.
    @property
    def channels(self) -> str:
        return f"{self.base}:ch:"

    def topic_channel(self, topic: str) -> str:
        return f"{self.channels}t:{topic}"

    def type_channel(self, event_type: str) -> str:
        return f"{self.channels}y:{event_type}"

    def beat_channel(self, worker_id: str) -> str:
        return f"{self.channels}beat:{worker_id}"


def parse_id(entry_id: str) -> StreamId:
    """A stream entry id as a comparable pair (`'1700000000000-3'` -> `(1700000000000, 3)`)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entry_fields(raw: Sequence[Any] | Mapping[str, Any]) -> dict[str, str]:
    """Entry fields as a dict, whether the reply was a flat `[f1, v1, ...]` list (Lua) or a dict."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw), 2)}


PUSH_SEPARATOR = "\x1f"  # never in JSON text (control characters are escaped) nor in ids and numbers
_PUSH_FIELDS = (F_TYPE, F_TOPICS, F_SEQS, F_EPOCHS, F_INCARNATION, F_TS, F_PART, F_META, F_EVENT)


def push_fields(push: str) -> tuple[str, dict[str, str]]:
    """(global entry id, entry fields) of an entry as the append script published it (ValueError
    if it is not one)."""
    parts = push.split(PUSH_SEPARATOR, len(_PUSH_FIELDS))
    if len(parts) != len(_PUSH_FIELDS) + 1:
        raise ValueError(f"not a bus push: {push[:80]!r}")
    fields = dict(zip(_PUSH_FIELDS, parts[1:], strict=True))
    if not fields[F_PART]:
        del fields[F_PART]
    return parts[0], fields


def encode_event(event: Event) -> str:
    return event.model_dump_json()


def decode_publication(fields: Mapping[str, str], ingress_ns: int | None = None) -> Publication:
    """Rebuild the `Publication` an append script stored (raises ValueError/KeyError if malformed)."""
    topics = tuple(str(t) for t in json.loads(fields[F_TOPICS]))
    seqs = dict(zip(topics, (int(s) for s in json.loads(fields[F_SEQS])), strict=True))
    epochs = dict(zip(topics, (str(e) for e in json.loads(fields[F_EPOCHS])), strict=True))
    event = Event.model_validate_json(fields[F_EVENT])
    primary = topics[0]
    stamped = event.sequenced(primary, seqs[primary], epochs[primary])
    ingress = Ingress.from_json(fields[F_META])
    part = fields.get(F_PART)
    publication = Publication(event=stamped, topics=topics, seqs=seqs, epochs=epochs, ingress=ingress,
                              part=None if part is None else int(part))
    if ingress_ns is not None:
        publication.ingress_ns = ingress_ns
    return publication
