"""Which shard holds a topic, and how an event's topics divide: pure, no Redis."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsmigrate.unified.redis_scripts import Keys
from wsmigrate.unified.shard_map import MAX_SHARDS, check_shards, shard_of, split_topics

topic_names = st.text(min_size=1, max_size=40)


def test_a_topic_belongs_to_the_shard_its_crc32_names_on_every_process() -> None:
    # Pinned values: a change here moves every deployment's topics to other shards.
    assert [shard_of(t, 16) for t in ("thread:45", "agent:7", "agents", "board:ü")] == [
        zlib.crc32(t.encode()) % 16 for t in ("thread:45", "agent:7", "agents", "board:ü")]
    assert shard_of("thread:45", 16) == 9
    assert shard_of("anything", 1) == 0


@given(st.lists(topic_names, min_size=1, max_size=8, unique=True), st.integers(1, 64))
def test_parts_cover_each_topic_once_primary_first_in_the_events_order(topics: list[str], shards: int) -> None:
    parts = split_topics(topics, shards)
    assert parts[0][1][0] == topics[0]
    assert sorted(t for _, part in parts for t in part) == sorted(topics)
    assert len({shard for shard, _ in parts}) == len(parts)
    for shard, part in parts:
        assert all(shard_of(t, shards) == shard for t in part)
        assert part == [t for t in topics if t in part]  # the event's order within a part


def test_shard_counts_are_bounded() -> None:
    assert check_shards(1) == 1
    assert check_shards(MAX_SHARDS) == MAX_SHARDS
    for bad in (0, -1, MAX_SHARDS + 1):
        with pytest.raises(ValueError, match="shards"):
            check_shards(bad)


def test_a_shards_keys_share_one_cluster_hash_tag_and_unsharded_keys_stay_plain() -> None:
    plain, third = Keys("app"), Keys("app", 3)
    assert (plain.events, plain.topic("thread:1"), plain.worker("w")) == ("app:events", "app:topic:thread:1",
                                                                           "app:worker:w")
    names = [third.events, third.incarnation, third.dedup("e1"), third.topic("thread:1"), third.history("thread:1"),
             third.worker("w")]
    assert names[0] == "app:{s3}:events"
    assert all(name.startswith("app:{s3}:") for name in names)


def test_the_bus_url_keeps_redis_pys_options_and_hands_ours_apart() -> None:
    from wsmigrate.unified.redis_url import bus_url_options, node_url, parse_flag

    rest, ours = bus_url_options("rediss://u:p@cache:6380/2?prefix=blue&shards=8&cluster=on&ssl_cert_reqs=none")
    assert rest == "rediss://u:p@cache:6380/2?ssl_cert_reqs=none"
    assert ours == {"prefix": "blue", "shards": "8", "cluster": "on"}
    assert parse_flag(ours["cluster"]) is True
    assert parse_flag("false") is False
    with pytest.raises(ValueError, match="cluster"):
        parse_flag("maybe")
    assert node_url(rest, "10.0.0.7", 7001) == "rediss://u:p@10.0.0.7:7001?ssl_cert_reqs=none"
    assert node_url("redis://seed:7000", "::1", 7002) == "redis://[::1]:7002"
