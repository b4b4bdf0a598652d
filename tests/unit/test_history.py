from __future__ import annotations

import gc

from examples.chat.declaration import ChatEvent
from tests.support import CHAT, FakeClock
from wsmigrate.unified.backend import sequence
from wsmigrate.unified.history import TopicHistory
from wsmigrate.unified.publication import Ingress, Position, Rollout


def add(history: TopicHistory, thread_id: int = 1) -> None:
    event = CHAT.create(ChatEvent.STREAM_CHUNK, {"thread_id": thread_id, "content": "x"})
    history.record(sequence(history, event, [f"thread:{thread_id}"], Ingress()))


def test_replay_is_all_or_nothing_within_the_size_bound() -> None:
    history = TopicHistory(size=3)
    for _ in range(5):
        add(history)
    epoch = history.position("thread:1").epoch
    assert [p.seqs["thread:1"] for p in history.since("thread:1", Position(epoch, 2)) or []] == [3, 4, 5]
    assert history.since("thread:1", Position(epoch, 1)) is None  # 2 is gone: never a partial replay
    assert history.since("thread:1", Position(epoch, 5)) == []
    assert history.since("thread:1", Position(epoch, 6)) is None  # from the future
    assert history.since("thread:1", Position("elsewhere", 4)) is None


def test_history_expires_by_age() -> None:
    clock = FakeClock(1000.0)
    history = TopicHistory(size=100, ttl_s=60, clock=clock)
    add(history)
    add(history)
    epoch = history.position("thread:1").epoch
    clock.now += 61
    assert history.since("thread:1", Position(epoch, 0)) is None
    assert history.since("thread:1", Position(epoch, 2)) == []


def test_topic_cap_evicts_oldest_and_gives_it_a_new_epoch() -> None:
    history = TopicHistory(max_topics=2)
    add(history, 1)
    first_epoch = history.position("thread:1").epoch
    add(history, 2)
    add(history, 3)
    assert history.evicted_topics == 1
    assert history.position("thread:1").epoch != first_epoch
    assert history.position("thread:1").seq == 0


def test_a_new_history_has_a_new_epoch() -> None:
    assert TopicHistory().position("thread:1").epoch != TopicHistory().position("thread:1").epoch


def test_retained_history_costs_the_cycle_collector_nothing() -> None:
    """Entries are tuples of strings and numbers: untracked after one collection, so thousands of
    retained events never lengthen a full collection (see the module docstring)."""
    history = TopicHistory(size=300)
    for i in range(600):
        event = CHAT.create(ChatEvent.AGENT_UPDATED, {"id": i % 3 + 1, "owner_id": 9})  # two topics, an owner
        history.record(sequence(history, event, [f"agent:{i % 3 + 1}", "agents"], Ingress(audience="9")))
        add(history, thread_id=i % 7 + 1)
    gc.collect()
    entries = [entry for log in history._logs.values() for entry in log.entries]
    assert len(entries) > 1000
    assert not [entry for entry in entries if gc.is_tracked(entry)]


def test_replayed_publications_keep_the_routing_facts() -> None:
    history = TopicHistory(size=10)
    event = CHAT.create(ChatEvent.AGENT_UPDATED, {"id": 7, "owner_id": 3})
    original = sequence(history, event, ["agent:7", "agents"], Ingress("bus", "3", Rollout("shadow", 0, 4)))
    history.record(original)
    for topic in ("agent:7", "agents"):
        (replayed,) = history.since(topic, Position(original.epochs[topic], 0)) or []
        assert replayed.event == original.event
        assert (replayed.topics, replayed.seqs, replayed.epochs) == (original.topics, original.seqs, original.epochs)
        assert replayed.ingress == Ingress(audience="3")  # what delivery needs; the rollout is not kept
        assert replayed.frame(topic) == original.frame(topic)
