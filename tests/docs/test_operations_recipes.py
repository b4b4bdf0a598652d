"""The flagd recipe of docs/operations.md, run as written: its flag file and its provider setup give
the type its stage and a sticky 50% live cohort of the legacy connections, through wsmigrate's
OpenFeature store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openfeature import api
from openfeature.provider.no_op_provider import NoOpProvider

from tests.docs.markdown import ROOT, code_blocks
from wsmigrate.bridge.flags_openfeature import OpenFeatureFlagStore
from wsmigrate.bridge.stages import Stage, resolve

OPERATIONS = ROOT / "docs" / "operations.md"


def recipe() -> tuple[str, str]:
    """The flagd section's flag file and its Python setup."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index("#### flagd")
    blocks = [b for b in code_blocks(OPERATIONS) if b.line > text.count("\n", 0, start)]
    flag_file = next(b.code for b in blocks if b.language == "json")
    setup = next(b.code for b in blocks if b.language == "python")
    return flag_file, setup


@pytest.fixture
def default_provider() -> Iterator[None]:
    yield
    api.set_provider(NoOpProvider())  # the recipe sets the default provider; leave none behind


async def test_the_flagd_recipe_gives_the_type_its_stage_and_a_sticky_half_of_the_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_provider: None,
) -> None:
    flag_file, setup = recipe()
    json.loads(flag_file)  # the file is valid JSON as printed
    (tmp_path / "flags.json").write_text(flag_file)
    monkeypatch.chdir(tmp_path)
    exec(compile(setup, f"{OPERATIONS}:flagd", "exec"), {})  # the documented setup, as written
    store = OpenFeatureFlagStore(event_types=["order_shipped"], poll_interval_s=60)
    ready = asyncio.Event()
    store.add_listener(lambda document: ready.set() if document.revision > 0 else None)
    await store.start()
    try:
        async with asyncio.timeout(10):  # the provider loads its file in the background: its ready event
            await ready.wait()
        document = store.current()
        assert store.last_error is None
        assert resolve(document, "order_shipped").stage is Stage.SHADOW
        assert not document.kill_switch
        users = [f"user-{i}" for i in range(400)]
        live = {u for u in users if store.in_live_cohort("order_shipped", u, "legacy_view")}
        assert 140 < len(live) < 260  # flagd's fractional 50/50
        assert live == {u for u in users if store.in_live_cohort("order_shipped", u, "legacy_view")}
        assert store.cohort_errors == 0
    finally:
        await store.stop()
