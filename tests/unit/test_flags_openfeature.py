"""The OpenFeature flag store against OpenFeature's own in-memory provider: stages read from the
team's flag system, changes picked up from the provider's events, bad values never applied,
writes refused with where to make them. Each test has an OpenFeature domain of its own."""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from wsmigrate.bridge.errors import FlagsError
from wsmigrate.bridge.flags import FlagChange
from wsmigrate.bridge.flags_openfeature import OpenFeatureFlagStore
from wsmigrate.bridge.stages import FlagsDocument, Stage, resolve

TYPES = ["order_paid", "order_shipped"]
TIMEOUT_S = 5.0


def flag(value: Any) -> InMemoryFlag[Any]:
    return InMemoryFlag("on", {"on": value})


class Provider(InMemoryProvider):
    """The in-memory provider, with flags that can be changed and announced like a real service's."""

    def change(self, **flags: Any) -> None:
        for key, value in flags.items():
            self._flags[key.replace("__", ".")] = flag(value)
        self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=list(flags)))


class Documents:
    """The store's listener: every document it installs, and a way to wait for the next."""

    def __init__(self) -> None:
        self.seen: list[FlagsDocument] = []
        self._changed = asyncio.Event()

    def __call__(self, document: FlagsDocument) -> None:
        self.seen.append(document)
        self._changed.set()

    async def next(self) -> FlagsDocument:
        count = len(self.seen)
        async with asyncio.timeout(TIMEOUT_S):
            while len(self.seen) == count:
                self._changed.clear()
                await self._changed.wait()
        return self.seen[-1]


@pytest.fixture
async def world() -> AsyncIterator[tuple[Provider, OpenFeatureFlagStore, Documents]]:
    domain = f"wsmigrate-test-{uuid.uuid4().hex[:8]}"
    provider = Provider({"wsmigrate.stage.order_paid": flag("shadow")})
    api.set_provider(provider, domain=domain)
    store = OpenFeatureFlagStore(event_types=TYPES, domain=domain, poll_interval_s=60)  # events, not polling
    documents = Documents()
    store.add_listener(documents)
    await store.start()
    yield provider, store, documents
    await store.stop()


async def test_stages_come_from_the_provider_and_absent_flags_mean_off(world: Any) -> None:
    _, store, _ = world
    document = store.current()
    assert resolve(document, "order_paid").stage is Stage.SHADOW
    assert resolve(document, "order_shipped").stage is Stage.OFF
    assert store.last_error is None
    assert store.kind == "openfeature"


async def test_a_change_in_the_provider_is_applied_audited_and_bumps_the_revision(world: Any) -> None:
    provider, store, documents = world
    revision = store.current().revision
    provider.change(wsmigrate__stage__order_paid="live", wsmigrate__live_percent__order_shipped=0)
    document = await documents.next()
    assert resolve(document, "order_paid").stage is Stage.LIVE
    assert document.revision == revision + 1
    [entry] = [e for e in store.audit() if e["revision"] == document.revision]
    assert entry["who"] == "openfeature:In-Memory Provider"
    assert (entry["event_type"], entry["from"], entry["to"]) == (
        "order_paid", "stage=shadow live_percent=0", "stage=live live_percent=0")
    provider.change(wsmigrate__kill_switch=True)
    killed = await documents.next()
    assert resolve(killed, "order_paid").stage is Stage.OFF  # the kill switch wins, as in every store


async def test_a_value_that_is_not_a_stage_or_of_the_wrong_type_keeps_the_last_good_one(world: Any) -> None:
    provider, store, _ = world
    good = store.current()
    provider.change(wsmigrate__stage__order_paid="turbo")
    store.refresh()  # what the provider's event schedules on the loop, run now
    assert store.current() == good
    assert store.last_error == "wsmigrate.stage.order_paid: 'turbo' is not a stage (off, shadow, live, complete)"
    assert store.rejections == 1
    provider.change(wsmigrate__stage__order_paid=3)
    store.refresh()
    assert store.current() == good
    assert store.last_error is not None
    assert "TYPE_MISMATCH" in store.last_error
    provider.change(wsmigrate__stage__order_paid="live")  # valid again: applied, the error cleared
    store.refresh()
    assert resolve(store.current(), "order_paid").stage is Stage.LIVE
    assert store.last_error is None


async def test_a_skipped_stage_is_reported_and_not_applied_unless_forced_in_the_provider(world: Any) -> None:
    provider, store, documents = world
    provider.change(wsmigrate__stage__order_shipped="live")  # off -> live skips shadow
    store.refresh()
    assert resolve(store.current(), "order_shipped").stage is Stage.OFF
    assert "skips shadow" in (store.last_error or "")
    assert "wsmigrate.force.order_shipped" in (store.last_error or "")
    provider.change(wsmigrate__force__order_shipped=True)
    document = await documents.next()
    assert resolve(document, "order_shipped").stage is Stage.LIVE


async def test_writes_are_refused_with_the_flag_to_change_and_where(world: Any) -> None:
    _, store, _ = world
    with pytest.raises(FlagsError) as refused:
        await store.apply(FlagChange("stage", "order_paid", Stage.LIVE), "cli@127.0.0.1")
    assert str(refused.value) == ("flags come from the OpenFeature provider 'In-Memory Provider': set "
                                  "wsmigrate.stage.order_paid to 'live' there (wsmigrate does not write to it)")
    with pytest.raises(FlagsError, match=r"set wsmigrate\.kill_switch to True there"):
        await store.apply(FlagChange("kill"), "cli@127.0.0.1")


class NeverReady(InMemoryProvider):
    def initialize(self, evaluation_context: EvaluationContext) -> None:
        raise RuntimeError("cannot reach the flag service")


async def test_a_provider_that_is_not_ready_means_every_type_off_and_says_so() -> None:
    domain = f"wsmigrate-test-{uuid.uuid4().hex[:8]}"
    api.set_provider(NeverReady({"wsmigrate.stage.order_paid": flag("live")}), domain=domain)
    store = OpenFeatureFlagStore(event_types=TYPES, domain=domain, poll_interval_s=60)
    await store.start()
    try:
        assert all(resolve(store.current(), t).stage is Stage.OFF for t in TYPES)
        assert store.last_error is not None
        assert "is error" in store.last_error
        assert "every type off until it is first ready" in store.last_error
    finally:
        await store.stop()



def rollout(base: str, percent: int) -> InMemoryFlag[Any]:
    """A stage flag with a percentage rollout to `live` on the user key, the way a flag service
    defines one: the type's own evaluation (scope `type`) gets `base`."""

    def evaluate(flag: InMemoryFlag[Any], context: EvaluationContext) -> FlagResolutionDetails[Any]:
        key = context.targeting_key
        if context.attributes.get("wsmigrate_scope") == "connection" and key:
            variant = "live" if zlib.crc32(key.encode()) % 100 < percent else base
            return FlagResolutionDetails(value=variant, variant=variant, reason=Reason.SPLIT)
        return FlagResolutionDetails(value=base, variant=base, reason=Reason.DEFAULT)

    return InMemoryFlag(base, {base: base, "live": "live"}, context_evaluator=evaluate)


async def test_the_cohort_is_the_providers_answer_for_the_user_and_the_type_keeps_its_stage(world: Any) -> None:
    provider, store, _documents = world
    provider._flags["wsmigrate.stage.order_paid"] = rollout("shadow", 50)
    listened = asyncio.Event()
    store.add_cohort_listener(listened.set)
    provider.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=["wsmigrate.stage.order_paid"]))
    async with asyncio.timeout(TIMEOUT_S):  # the provider's event reaches the loop: cohorts are re-decided
        await listened.wait()
    assert resolve(store.current(), "order_paid").stage is Stage.SHADOW  # unchanged: no new revision
    users = [f"user-{i}" for i in range(200)]
    live = {u for u in users if store.in_live_cohort("order_paid", u, "legacy_view")}
    assert 60 < len(live) < 140  # about half
    assert live == {u for u in users if store.in_live_cohort("order_paid", u, "legacy_view")}  # sticky
    assert not store.in_live_cohort("order_shipped", "user-1", "legacy_view")  # flag absent: off
    assert store.cohort_errors == 0


async def test_a_cohort_the_provider_cannot_answer_stays_on_the_legacy_path_and_is_counted(world: Any) -> None:
    provider, store, _ = world
    provider._flags["wsmigrate.stage.order_paid"] = InMemoryFlag("on", {"on": 42})  # not a string
    assert not store.in_live_cohort("order_paid", "user-1", "legacy_view")
    assert store.cohort_errors == 1
