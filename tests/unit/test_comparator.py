"""Every comparator outcome, late arrivals and overflow included, with a fake clock."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from examples.chat.declaration import ChatEvent
from tests.support import FakeClock
from wsmigrate.bridge.comparator import Comparator
from wsmigrate.metrics import WsMetrics


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def comparator(clock: FakeClock, **kwargs: object) -> Comparator:
    metrics = WsMetrics(CollectorRegistry(), event_types=[t.value for t in ChatEvent])
    return Comparator(metrics=metrics, window_s=5.0, clock=clock, **kwargs)  # type: ignore[arg-type]


def count(c: Comparator, outcome: str, event_type: str = "message_created") -> float:
    assert c.metrics is not None
    return c.metrics.registry.get_sample_value(
        "wsmigrate_comparisons_total", {"event_type": event_type, "outcome": outcome}) or 0.0


T = "message_created"


def test_match_needs_both_paths_once_with_the_same_payload(clock: FakeClock) -> None:
    c = comparator(clock)
    c.record("e1", T, "legacy", "r1", '{"a":1}')
    c.record("e1", T, "unified", "r1", '{"a":1}')
    assert c.expire() == 0  # decided only when the window closes
    clock.now += 5.1
    assert c.expire() == 1
    assert count(c, "match") == 1
    assert len(c.samples) == 0


def test_mismatch_missing_and_duplicates(clock: FakeClock) -> None:
    c = comparator(clock)
    c.record("e1", T, "legacy", "r1", '{"a":1}')
    c.record("e1", T, "unified", "r1", '{"a":2}')
    c.record("e2", T, "legacy", "r1", "x")
    c.record("e3", T, "unified", "r1", "x")
    c.record("e4", T, "legacy", "r1", "x")
    c.record("e4", T, "legacy", "r1", "x")
    c.record("e4", T, "unified", "r1", "x")
    c.record("e5", T, "legacy", "r1", "x")
    c.record("e5", T, "unified", "r1", "x")
    c.record("e5", T, "unified", "r1", "x")
    c.record("e1", T, "legacy", "r2", '{"a":1}')  # another recipient is another pair
    clock.now += 6
    assert c.expire() == 6
    assert {o: count(c, o) for o in ("mismatch_payload", "missing_unified", "missing_legacy",
                                     "duplicate_legacy", "duplicate_unified")} == {
        "mismatch_payload": 1, "missing_unified": 2, "missing_legacy": 1, "duplicate_legacy": 1,
        "duplicate_unified": 1}
    assert count(c, "match") == 0
    sample = next(s for s in c.samples if s["outcome"] == "mismatch_payload")
    assert (sample["legacy"], sample["unified"]) == ('{"a":1}', '{"a":2}')


def test_a_stall_between_the_two_halves_of_a_pair_never_reads_as_missing(clock: FakeClock) -> None:
    c = comparator(clock)
    c.record("e1", T, "unified", "r1", "x")
    clock.now += 60  # the process stalls mid-dispatch (GC pause, descheduled)
    c.record("e1", T, "legacy", "r1", "x")  # the other half still finds its pair open
    c.expire()
    assert count(c, "match") == 1
    assert count(c, "missing_legacy") + count(c, "missing_unified") == 0


def test_late_arrivals_are_counted_once_each_and_never_change_the_outcome(clock: FakeClock) -> None:
    c = comparator(clock)
    c.record("e1", T, "legacy", "r1", "x")
    clock.now += 6
    c.expire()
    c.record("e1", T, "unified", "r1", "x")
    assert count(c, "missing_unified") == 1
    assert count(c, "late") == 1
    clock.now += 6
    c.expire()
    assert count(c, "match") == 0
    assert sum(count(c, o) for o in ("missing_unified", "late")) == 2


def test_clean_and_ignore_hooks(clock: FakeClock) -> None:
    c = comparator(clock)
    c.add_clean(T, lambda frame: {k: v for k, v in frame.items() if k != "ts"})
    c.record("e1", T, "legacy", "r1", json.dumps({"a": 1, "ts": 1}))
    c.record("e1", T, "unified", "r1", json.dumps({"ts": 2, "a": 1}))
    c.add_ignore("stream_chunk", lambda legacy, unified: legacy.strip() == unified.strip())
    c.record("e2", "stream_chunk", "legacy", "r1", "tok ")
    c.record("e2", "stream_chunk", "unified", "r1", "tok")
    clock.now += 6
    c.expire()
    assert count(c, "match") == 1
    assert count(c, "ignored", "stream_chunk") == 1


def test_overflow_is_counted_so_zero_mismatches_is_never_vacuous(clock: FakeClock) -> None:
    c = comparator(clock, capacity=3)
    for index in range(5):
        c.record(f"e{index}", T, "legacy", "r1", "x")
    assert c.open_pairs == 3
    assert c.metrics is not None
    skipped = c.metrics.registry.get_sample_value(
        "wsmigrate_comparisons_skipped_total", {"event_type": T, "reason": "capacity"})
    assert skipped == 2
    c.record("e4", T, "unified", "r1", "x")  # the other path's half of a skipped event is skipped too
    clock.now += 6
    c.expire()
    c.record("e4", T, "unified", "r1", "x")  # even after room was freed
    c.flush()
    assert count(c, "missing_unified") == 3
    assert count(c, "missing_legacy") == 0


def test_sampling_is_by_event_so_both_paths_skip_the_same_pairs(clock: FakeClock) -> None:
    c = comparator(clock, sample_rate=0.5)
    for index in range(400):
        c.record(f"e{index}", T, "legacy", "r1", "x")
        c.record(f"e{index}", T, "unified", "r1", "x")
    c.flush()
    compared = count(c, "match")
    assert c.metrics is not None
    sampled_out = c.metrics.registry.get_sample_value(
        "wsmigrate_comparisons_skipped_total", {"event_type": T, "reason": "sampled_out"})
    assert compared + (sampled_out or 0) / 2 == 400
    assert 120 < compared < 280
    assert count(c, "missing_legacy") + count(c, "missing_unified") == 0
