from __future__ import annotations

from unified import Event, EventType
from unified.backend import sequence
from unified.history import TopicHistory
from unified.publication import Position


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add(history: TopicHistory, thread_id: int = 1) -> None:
    event = Event.create(EventType.STREAM_CHUNK, {"thread_id": thread_id, "content": "x"})
    history.record(sequence(history, event, [f"thread:{thread_id}"], {}))


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
    clock = Clock()
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
