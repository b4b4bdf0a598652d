"""`wsmigrate promote` refuses without proof, `assert_no_divergence` and the mismatch samples."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from examples.chat.legacy_client import LegacyClient
from tests.support import ADMIN_TOKEN, promote, rest, set_stage
from wsmigrate.bridge.comparator import Comparator
from wsmigrate.bridge.testing import assert_no_divergence


async def test_promote_needs_enough_clean_comparisons(server_factory: Any) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN, compare_window_s=0.2)
    result = await asyncio.to_thread(promote, server, "message_created")  # off -> shadow needs no proof
    assert result.returncode == 0, result.stderr
    assert "off -> shadow" in result.stdout
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    client = LegacyClient(f"ws://127.0.0.1:{server.port}")
    await client.open_thread(thread["id"])
    for index in range(5):
        await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": str(index)})
    await client.ping(1)
    server.call(server.runtime.comparator.flush)
    result = await asyncio.to_thread(promote, server, "message_created")
    assert result.returncode == 1
    assert "only 5 compared deliveries (need 10000)" in result.stderr
    result = await asyncio.to_thread(promote, server, "message_created", "--min-compared", "5")
    assert result.returncode == 0, result.stderr
    assert "shadow -> live" in result.stdout
    view = await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)
    assert view["types"]["message_created"]["stage"] == "live"
    mismatches = await rest(server, "GET", "/api/admin/mismatches", token=ADMIN_TOKEN)
    assert mismatches["samples"] == []
    await client.close()


async def test_the_comparator_of_a_running_server_passes_assert_no_divergence(server_factory: Any) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    await set_stage(server, "stream_chunk", "shadow")
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    client = LegacyClient(f"ws://127.0.0.1:{server.port}")
    await client.open_thread(thread["id"])
    await rest(server, "POST", f"/api/threads/{thread['id']}/run", {"chunks": 50})
    await client.expect("stream_end")
    matches = server.call(lambda: assert_no_divergence(server.runtime.comparator, event_types=["stream_chunk"],
                                                       min_compared=50))
    assert matches == {"stream_chunk": 50}
    await client.close()


def test_assert_no_divergence_fails_on_divergence_and_on_an_empty_comparison() -> None:
    comparator = Comparator()
    comparator.record("e1", "message_created", "legacy", "r1", "a")
    with pytest.raises(AssertionError, match="1 missing_unified"):
        assert_no_divergence(comparator)
    with pytest.raises(AssertionError, match="only 0 compared pairs"):
        assert_no_divergence(Comparator(), event_types=["stream_chunk"])
