"""Sticky cohorts end to end: within `shadow`, a percentage of legacy sockets is served live."""

from __future__ import annotations

from typing import Any

from examples.chat import legacy_frames as frames
from examples.chat.legacy_client import LegacyClient
from tests.support import ADMIN_TOKEN, RunningServer, rest

SOCKETS = 40


def sent(server: RunningServer, path: str) -> float:
    return server.runtime.registry.get_sample_value(
        "wsmigrate_recipient_deliveries_total",
        {"event_type": "message_created", "path": path, "outcome": "sent"}) or 0.0


async def post_and_check(server: RunningServer, clients: list[LegacyClient], thread_id: int, text: str) -> None:
    message = await rest(server, "POST", f"/api/threads/{thread_id}/messages", {"content": text})
    for client in clients:  # whichever path serves a socket, it gets the frame exactly once
        start = len(client.frames)
        await client.ping(1)
        assert [f for f in client.frames[start:] if f["type"] != "pong"] == [frames.thread_message(message)]


async def test_a_live_cohort_in_shadow_is_sticky_and_only_grows(server_factory: Any) -> None:
    server: RunningServer = server_factory(admin_token=ADMIN_TOKEN)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    clients = [LegacyClient(f"ws://127.0.0.1:{server.port}") for _ in range(SOCKETS)]
    for client in clients:
        await client.open_thread(thread["id"])
    path = "/api/admin/flags/message_created"
    await rest(server, "PUT", path, {"stage": "shadow"}, token=ADMIN_TOKEN)

    served_live = []
    for percent in (0, 50, 100):
        await rest(server, "PUT", path, {"live_percent": percent}, token=ADMIN_TOKEN)
        legacy_before, unified_before = sent(server, "legacy"), sent(server, "unified")
        await post_and_check(server, clients, thread["id"], f"at {percent}%")
        live = sent(server, "unified") - unified_before
        assert live + sent(server, "legacy") - legacy_before == SOCKETS
        served_live.append(live)
    assert served_live[0] == 0
    assert 0 < served_live[1] < SOCKETS  # a real split (crc32 buckets of 40 client ids)
    assert served_live[2] == SOCKETS
    # Back to 50%: the same connections as before are live (the split is sticky, not re-drawn).
    await rest(server, "PUT", path, {"live_percent": 50, "force": True}, token=ADMIN_TOKEN)
    unified_before = sent(server, "unified")
    await post_and_check(server, clients, thread["id"], "back at 50%")
    assert sent(server, "unified") - unified_before == served_live[1]
    for client in clients:
        await client.close()
