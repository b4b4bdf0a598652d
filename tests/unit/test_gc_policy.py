"""The server's collector policy: applied at start, undone at stop, thresholds validated."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from wsmigrate.bridge.server.gc_policy import CollectorPolicy, parse_thresholds


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
