"""Which shard of a sharded Redis bus holds a topic, and how an event's topics divide among shards.

Pure decisions, no I/O (the Redis backend acts on them). A topic belongs to shard
`crc32(topic) mod shards`: stable across processes, hosts and languages (Python's `hash` is
salted per process), so every worker agrees without coordination. A topic never changes shard
while the shard count stays the same; changing the count moves topics, and their positions with
them (their next `since` answers `recovered: false`), so it is a deliberate operation
(docs/scaling.md, "Beyond one Redis primary").

An event addressed to several topics is sequenced by each shard that holds some of them, for those
topics only: one part per shard, the part holding the event's primary topic first (part 0), each
part's topics in the event's order. Each shard's append stays one atomic script on one node; the
parts share the event id.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

MAX_SHARDS = 1024


def check_shards(shards: int) -> int:
    """`shards` if it is a usable shard count (ValueError otherwise)."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"a sharded bus has 1 to {MAX_SHARDS} shards, not {shards}")
    return shards


def shard_of(topic: str, shards: int) -> int:
    """The shard (0 .. shards - 1) that sequences `topic`."""
    return zlib.crc32(topic.encode("utf-8")) % shards


def split_topics(topics: Sequence[str], shards: int) -> list[tuple[int, list[str]]]:
    """`topics` grouped by shard: `(shard, its topics in order)`, the primary topic's shard first."""
    parts: dict[int, list[str]] = {}
    for topic in topics:
        parts.setdefault(shard_of(topic, shards), []).append(topic)
    return list(parts.items())
