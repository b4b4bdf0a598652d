"""`ProviderCohorts`: per-connection live-cohort membership decided by the flag system, re-decided
in bounded slices, only for types in `shadow`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from wsmigrate.bridge.cohorts import SLICE, ProviderCohorts
from wsmigrate.bridge.stages import FlagsDocument, Stage, TypeFlags


class Source:
    def __init__(self) -> None:
        self.live: set[str] = set()
        self.evaluations = 0

    def in_live_cohort(self, event_type: str, identity: str, kind: str) -> bool:
        self.evaluations += 1
        return identity in self.live

    def add_cohort_listener(self, listener: Callable[[], None]) -> None:
        raise AssertionError("not used here")


def shadow(*types: str) -> FlagsDocument:
    return FlagsDocument(types={t: TypeFlags(stage=Stage.SHADOW) for t in types})


def test_membership_is_decided_at_connect_and_only_for_types_in_shadow() -> None:
    source = Source()
    source.live = {"u1"}
    document = shadow("a")
    cohorts = ProviderCohorts(source, lambda: document, ["a", "b"])
    cohorts.add("c1", "u1", "legacy_view")
    cohorts.add("c2", "u2", "legacy_view")
    assert (cohorts.live("c1", "a"), cohorts.live("c1", "b"), cohorts.live("c2", "a")) == (True, False, False)
    assert source.evaluations == 2  # one per connection and shadow type, none for `b` (off)
    assert cohorts.counts() == {"a": {"live": 1, "legacy": 1}}
    cohorts.remove("c1")
    assert not cohorts.live("c1", "a")
    assert cohorts.counts() == {"a": {"live": 0, "legacy": 1}}


async def test_a_refresh_re_decides_every_connection_a_slice_per_loop_turn() -> None:
    source = Source()
    document = shadow("a")
    cohorts = ProviderCohorts(source, lambda: document, ["a"])
    clients = SLICE * 2 + 7
    for i in range(clients):
        cohorts.add(f"c{i}", f"u{i}", "legacy_view")
    source.live = {f"u{i}" for i in range(clients)}
    source.evaluations = 0
    cohorts.refresh_all()
    assert source.evaluations == SLICE  # the first slice at once, the rest on later loop turns
    assert cohorts.live("c0", "a")
    assert not cohorts.live(f"c{clients - 1}", "a")
    for _ in range(3):
        await asyncio.sleep(0)  # let the scheduled slices run
    assert source.evaluations == clients
    assert cohorts.refreshes == 1
    assert all(cohorts.live(f"c{i}", "a") for i in range(clients))


async def test_a_newer_refresh_supersedes_the_slices_of_an_older_one() -> None:
    source = Source()
    document = shadow("a")
    cohorts = ProviderCohorts(source, lambda: document, ["a"])
    for i in range(SLICE * 3):
        cohorts.add(f"c{i}", f"u{i}", "legacy_view")
    source.evaluations = 0
    cohorts.refresh_all()
    cohorts.refresh_all()  # before the first one's later slices ran
    for _ in range(5):
        await asyncio.sleep(0)
    assert source.evaluations == SLICE + SLICE * 3  # the first refresh stopped after its first slice
    assert cohorts.refreshes == 1


def test_without_a_running_loop_a_refresh_is_done_at_once() -> None:
    source = Source()
    document = shadow("a")
    cohorts = ProviderCohorts(source, lambda: document, ["a"])
    for i in range(SLICE + 1):
        cohorts.add(f"c{i}", f"u{i}", "legacy_view")
    source.live = {f"u{SLICE}"}
    cohorts.refresh_all()
    assert cohorts.live(f"c{SLICE}", "a")
    assert cohorts.refreshes == 1
