"""The `FlagStore` contract, run against every implementation: memory, file, Redis and OpenFeature
(OpenFeature's own in-memory provider).

Whatever holds the flags, the dual path and the operators rely on the same promises: every type is
`off` until something says otherwise; a change reaches `current()` and every listener with a
higher revision and an audit entry saying from what to what; a forward skip is refused unless
forced; the kill switch wins over every stage; a value the store cannot use never replaces the last
good document. Each implementation has a `Driver` that changes the flags the way that store is
changed in production: through `apply` for the stores wsmigrate writes, in the provider for the
OpenFeature one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
from openfeature import api
from openfeature.event import ProviderEventDetails
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from redis import Redis

from wsmigrate.bridge.errors import FlagsError
from wsmigrate.bridge.flags import FileFlagStore, FlagChange, FlagStore, MemoryFlagStore
from wsmigrate.bridge.flags_openfeature import OpenFeatureFlagStore
from wsmigrate.bridge.flags_redis import RedisFlagStore
from wsmigrate.bridge.stages import FlagsDocument, Stage, resolve

TYPES = ("order_paid", "order_shipped")


class Driver(Protocol):
    @property
    def store(self) -> FlagStore: ...

    async def set_stage(self, event_type: str, stage: Stage, *, force: bool = False) -> None:
        """Change a type's stage at the store's source; `FlagsError` when the store refuses it there."""

    async def kill(self, on: bool) -> None: ...

    async def send_garbage(self) -> None:
        """A value the store cannot use arrives from its source (or `FlagsError` for a store that
        refuses it when it is written)."""


class ApplyDriver:
    """Memory, file and Redis: changed through `apply`, as the admin API does."""

    def __init__(self, store: FlagStore, garbage: Callable[[], Any]) -> None:
        self.store = store
        self._garbage = garbage

    async def set_stage(self, event_type: str, stage: Stage, *, force: bool = False) -> None:
        await self.store.apply(FlagChange(kind="stage", event_type=event_type, stage=stage, force=force), "test")

    async def kill(self, on: bool) -> None:
        await self.store.apply(FlagChange(kind="kill" if on else "unkill"), "test")

    async def send_garbage(self) -> None:
        result = self._garbage()
        if hasattr(result, "__await__"):
            await result


class ProviderDriver:
    """OpenFeature: changed in the provider, then read the way a provider event makes the store read."""

    def __init__(self, provider: InMemoryProvider, store: OpenFeatureFlagStore) -> None:
        self.provider = provider
        self.store = store
        self._flags: dict[str, Any] = {}

    def _set(self, key: str, value: Any) -> None:
        self._flags[key] = value
        self.provider._flags[key] = InMemoryFlag("on", {"on": value})
        self.provider.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=[key]))
        self.store.refresh()

    async def set_stage(self, event_type: str, stage: Stage, *, force: bool = False) -> None:
        self._flags_force(event_type, force)
        before = self.store.current()
        self._set(f"wsmigrate.stage.{event_type}", stage.value)
        if self.store.current() == before and resolve(before, event_type).stage is not stage:
            raise FlagsError(self.store.last_error or "not applied")

    def _flags_force(self, event_type: str, force: bool) -> None:
        self.provider._flags[f"wsmigrate.force.{event_type}"] = InMemoryFlag("on", {"on": force})

    async def kill(self, on: bool) -> None:
        self._set("wsmigrate.kill_switch", on)

    async def send_garbage(self) -> None:
        self._set("wsmigrate.stage.order_paid", "halfway")


@pytest.fixture(params=["memory", "file", "redis", "openfeature"])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Driver]:
    made: Driver
    if request.param == "memory":
        memory = MemoryFlagStore()
        made = ApplyDriver(memory, lambda: memory.apply(FlagChange(kind="percent", event_type="order_paid",
                                                                   live_percent=101), "test"))
    elif request.param == "file":
        path = tmp_path / "flags.toml"
        file_store = FileFlagStore(path, event_types=TYPES)

        def corrupt_file() -> None:
            path.write_text('[types.order_paid]\nstage = "halfway"\n')
            file_store.reload_if_changed()

        made = ApplyDriver(file_store, corrupt_file)
    elif request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        redis_store = RedisFlagStore(url, prefix=prefix, event_types=TYPES)

        async def corrupt_key() -> None:
            with Redis.from_url(url) as raw:
                raw.set(redis_store.key, '{"revision": 99, "types": {"order_paid": {"stage": "halfway"}}}')
            await redis_store.refresh()

        made = ApplyDriver(redis_store, corrupt_key)
    else:
        domain = f"wsmigrate-contract-{uuid.uuid4().hex[:8]}"
        provider = InMemoryProvider({})
        api.set_provider(provider, domain=domain)
        made = ProviderDriver(provider, OpenFeatureFlagStore(event_types=TYPES, domain=domain, poll_interval_s=60))
    await made.store.start()
    yield made
    await made.store.stop()


class Listener:
    def __init__(self) -> None:
        self.seen: list[FlagsDocument] = []

    def __call__(self, document: FlagsDocument) -> None:
        self.seen.append(document)


async def test_every_type_is_off_until_something_says_otherwise(driver: Driver) -> None:
    document = driver.store.current()
    assert [resolve(document, t).stage for t in TYPES] == [Stage.OFF, Stage.OFF]
    assert driver.store.last_error is None


async def test_a_change_reaches_current_every_listener_and_the_audit_with_a_higher_revision(driver: Driver) -> None:
    listener = Listener()
    driver.store.add_listener(listener)
    before = driver.store.current().revision
    await driver.set_stage("order_paid", Stage.SHADOW)
    document = driver.store.current()
    assert resolve(document, "order_paid").stage is Stage.SHADOW
    assert resolve(document, "order_shipped").stage is Stage.OFF
    assert document.revision > before
    assert listener.seen[-1] == document
    entry = (await driver.store.audit_log())[-1]
    assert (entry["event_type"], entry["revision"]) == ("order_paid", document.revision)
    assert "off" in entry["from"]
    assert "shadow" in entry["to"]

    await driver.set_stage("order_paid", Stage.LIVE)
    assert driver.store.current().revision > document.revision  # revisions only grow


async def test_a_forward_skip_is_refused_unless_forced(driver: Driver) -> None:
    with pytest.raises(FlagsError, match="skips shadow"):
        await driver.set_stage("order_paid", Stage.LIVE)
    assert resolve(driver.store.current(), "order_paid").stage is Stage.OFF
    await driver.set_stage("order_paid", Stage.LIVE, force=True)
    assert resolve(driver.store.current(), "order_paid").stage is Stage.LIVE


async def test_the_kill_switch_wins_over_every_stage_and_its_release_restores_them(driver: Driver) -> None:
    await driver.set_stage("order_paid", Stage.SHADOW)
    await driver.kill(True)
    assert resolve(driver.store.current(), "order_paid").stage is Stage.OFF
    assert resolve(driver.store.current(), "order_paid").source == "kill_switch"
    await driver.kill(False)
    assert resolve(driver.store.current(), "order_paid").stage is Stage.SHADOW


async def test_a_value_the_store_cannot_use_never_replaces_the_last_good_document(driver: Driver) -> None:
    await driver.set_stage("order_paid", Stage.SHADOW)
    good = driver.store.current()
    if driver.store.kind == "memory":  # nothing outside wsmigrate writes it: refused when written
        with pytest.raises(FlagsError):
            await driver.send_garbage()
    else:  # arrives from the file, the key or the provider: refused when read, and said
        await driver.send_garbage()
        assert driver.store.last_error
    assert driver.store.current() == good
