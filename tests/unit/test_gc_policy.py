"""The server's collector policy: applied at start, undone at stop, thresholds validated, pauses timed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram

from wsmigrate.bridge.server.gc_policy import THAW_CHECK_S, CollectorPauses, CollectorPolicy, parse_thresholds
from wsmigrate.metrics.registry import GC_PAUSE_BUCKETS


@pytest.fixture
def interpreter_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("interpreter_gc")
def test_apply_freezes_and_tunes_then_restore_undoes_both() -> None:
    before = gc.get_threshold()
    policy = CollectorPolicy(freeze=True, thresholds=(700, 10, 100))
    policy.apply()
    assert gc.get_threshold() == (700, 10, 100)
    assert gc.get_freeze_count() > 0
    policy.restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("interpreter_gc")
def test_an_empty_policy_leaves_the_interpreter_alone() -> None:
    before = gc.get_threshold()
    policy = CollectorPolicy(freeze=False, thresholds=parse_thresholds(""))
    policy.apply()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    policy.restore()


@pytest.mark.parametrize("text", ["1,2", "1,2,3,4", "0,10,10", "a,b,c"])
def test_bad_thresholds_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_thresholds(text)


def test_thresholds_parse() -> None:
    assert parse_thresholds(" 700, 10 ,100 ") == (700, 10, 100)


def test_pauses_are_timed_per_generation_and_published_to_the_histogram() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("pause_seconds", "pauses", ["generation"], registry=registry, buckets=GC_PAUSE_BUCKETS)
    pauses = CollectorPauses(histogram)
    pauses.install()
    try:
        gc.collect(1)
        gc.collect(2)
    finally:
        pauses.uninstall()
    assert pauses.collections[1] >= 1
    assert pauses.collections[2] >= 1
    assert pauses.longest_s > 0
    # nothing reaches the histogram until it is published (the collector's hook only counts)
    assert registry.get_sample_value("pause_seconds_count", {"generation": "2"}) == 0
    pauses.publish()
    assert registry.get_sample_value("pause_seconds_count", {"generation": "2"}) == pauses.collections[2]
    assert registry.get_sample_value("pause_seconds_sum", {"generation": "2"}) == pytest.approx(pauses.paused_s[2])
    pauses.publish()  # published once only
    assert registry.get_sample_value("pause_seconds_count", {"generation": "2"}) == pauses.collections[2]
    gc.collect(2)  # uninstalled: no longer counted
    assert registry.get_sample_value("pause_seconds_count", {"generation": "2"}) == pauses.collections[2]


def test_the_longest_pause_is_taken_per_window() -> None:
    pauses = CollectorPauses()
    pauses.install()
    try:
        gc.collect()
    finally:
        pauses.uninstall()
    first = pauses.take_longest()
    assert first > 0
    assert pauses.take_longest() == 0.0
    assert pauses.summary()["collections"][2] >= 1


@pytest.mark.usefixtures("interpreter_gc")
def test_the_policy_installs_its_recorder_and_removes_it_at_restore() -> None:
    policy = CollectorPolicy(freeze=False, thresholds=None)
    policy.apply()
    assert policy.pauses._on_collection in gc.callbacks
    policy.restore()
    assert policy.pauses._on_collection not in gc.callbacks


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.usefixtures("interpreter_gc")
def test_a_full_pass_freezes_its_survivors_so_the_next_one_skips_them() -> None:
    policy = CollectorPolicy(freeze=True, thresholds=None, clock=Clock())
    policy.apply()
    try:
        survivor = [[i] for i in range(1000)]  # tracked containers, alive across the pass
        assert any(o is survivor for o in gc.get_objects())
        gc.collect()
        assert not any(o is survivor for o in gc.get_objects())  # frozen: no generation holds it
        assert gc.get_freeze_count() >= len(survivor)
        gc.collect(1)  # a young pass freezes nothing
        young = [[1]]
        gc.collect(1)
        assert any(o is young for o in gc.get_objects())
    finally:
        policy.restore()


@pytest.mark.usefixtures("interpreter_gc")
def test_the_frozen_generation_is_thawed_once_it_has_doubled() -> None:
    clock = Clock()
    gauge = CollectorRegistry()
    frozen = Gauge("frozen", "frozen objects", registry=gauge)
    policy = CollectorPolicy(freeze=True, thresholds=None, clock=clock, frozen_gauge=frozen)
    policy.apply()  # counts the start-up heap: the mark is twice that
    try:
        baseline = gc.get_freeze_count()
        assert gauge.get_sample_value("frozen") == baseline
        grown = [[i] for i in range(baseline + 1000)]  # more than doubles the frozen generation
        gc.collect()
        clock.now += THAW_CHECK_S / 2
        gc.collect()  # doubled, but before the first check (a reconnect storm after a start): no thaw
        assert policy.thaws == 0
        clock.now += THAW_CHECK_S / 2
        gc.collect()
        assert policy.thaws == 1
        assert gc.get_freeze_count() == 0  # thawed: the next full pass walks everything once
        assert any(o is grown for o in gc.get_objects())
        assert gauge.get_sample_value("frozen") > 2 * baseline
        clock.now += THAW_CHECK_S
        gc.collect()  # that pass freezes again and sets a new mark from the new size
        assert gc.get_freeze_count() >= len(grown)
        assert policy.thaws == 1
    finally:
        policy.restore()
