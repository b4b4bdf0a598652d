"""All 4 stages x every origin x both client kinds: exactly once, right shape, nobody else.

For each case a real server runs with the event type's stage set through the admin API. One event
enters at a legacy call site (`broadcast_to_*`), on the bus (`bus.publish`), or, for messages,
through the transactional outbox (a stored message's event, committed with it). Subscribed
legacy and unified sockets must each receive it exactly once in their own frame shape; sockets
subscribed elsewhere receive nothing. A ping after the event proves nothing else was queued.
The delivery counters show which path wrote to the legacy socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from examples.chat import legacy_frames as frames
from examples.chat.declaration import ChatEvent
from examples.chat.legacy_client import LegacyClient
from examples.chat.schemas import AgentOut, MessageOut
from tests.support import ADMIN_TOKEN, CHAT, Client, RunningServer, rest, set_stage

STAGES = ["off", "shadow", "live", "complete"]
ORIGINS = ["legacy_call", "bus"]
MESSAGE_ORIGINS = [*ORIGINS, "outbox"]


async def legacy_ping_flush(client: LegacyClient) -> list[dict[str, Any]]:
    """Everything the legacy socket received before the answer to a ping."""
    start = len(client.frames)
    await client.ping(99)
    return [f for f in client.frames[start:] if f["type"] != "pong"]


async def unified_ping_flush(client: Client) -> list[dict[str, Any]]:
    start = len(client.frames)
    await client.send({"type": "ping", "message_id": "flush"})
    await client.expect("pong")
    return [f for f in client.frames[start:] if f["type"] != "pong"]


def deliveries(server: RunningServer, event_type: str, path: str, outcome: str) -> float:
    value = server.runtime.registry.get_sample_value(
        "wsmigrate_recipient_deliveries_total", {"event_type": event_type, "path": path, "outcome": outcome})
    return value or 0.0


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("origin", MESSAGE_ORIGINS)
async def test_message_created_reaches_each_subscribed_client_exactly_once(
    server_factory: Any, stage: str, origin: str
) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    other = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    await set_stage(server, "message_created", stage)
    base = f"ws://127.0.0.1:{server.port}"
    legacy, legacy_elsewhere = LegacyClient(base), LegacyClient(base)
    await legacy.open_thread(thread["id"])
    await legacy_elsewhere.open_thread(other["id"])
    unified, unified_elsewhere = await Client.open(server.ws_url()), await Client.open(server.ws_url())
    await unified.subscribe(f"thread:{thread['id']}")
    await unified_elsewhere.subscribe(f"thread:{other['id']}")

    if origin == "outbox":
        message = await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "m"})
    else:  # an announcement of a message the old code stored itself
        message = MessageOut(id=7, thread_id=thread["id"], role="user", content="m",
                             timestamp="2026-01-01T00:00:00.000Z").model_dump()
        if origin == "legacy_call":
            await asyncio.to_thread(server.run, server.chat.manager.broadcast_to_thread(
                thread["id"], frames.thread_message(message)))
        else:
            server.run(server.runtime.bus.publish(CHAT.create(ChatEvent.MESSAGE_CREATED, message)))

    legacy_got = await legacy_ping_flush(legacy)
    unified_got = await unified_ping_flush(unified)
    assert legacy_got == [frames.thread_message(message)]
    assert len(unified_got) == 1
    assert unified_got[0]["type"] == "message_created"
    assert unified_got[0]["data"] == message
    assert await legacy_ping_flush(legacy_elsewhere) == []
    assert await unified_ping_flush(unified_elsewhere) == []

    legacy_serves = stage in ("off", "shadow")
    assert deliveries(server, "message_created", "legacy", "sent") == (1 if legacy_serves else 0)
    assert deliveries(server, "message_created", "unified", "sent") == (1 if legacy_serves else 2)
    assert deliveries(server, "message_created", "unified", "shadow") == (1 if stage == "shadow" else 0)
    assert deliveries(server, "message_created", "legacy", "shadow") == (1 if stage == "live" else 0)
    published = {other: server.runtime.registry.get_sample_value(
        "wsmigrate_events_published_total", {"event_type": "message_created", "origin": other})
        for other in MESSAGE_ORIGINS}
    assert published == {other: (1 if other == origin else 0) for other in MESSAGE_ORIGINS}
    for client in (legacy, legacy_elsewhere):
        await client.close()
    for unified_client in (unified, unified_elsewhere):
        await unified_client.close()


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("origin", ORIGINS)
async def test_agent_updated_reaches_agent_sockets_and_subscribers_exactly_once(
    server_factory: Any, stage: str, origin: str
) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    other = await rest(server, "POST", "/api/agents", {"name": "b"})
    await set_stage(server, "agent_updated", stage)
    base = f"ws://127.0.0.1:{server.port}"
    legacy, legacy_elsewhere = LegacyClient(base), LegacyClient(base)
    await legacy.open_agent(agent["id"])
    await legacy_elsewhere.open_agent(other["id"])
    unified, collection = await Client.open(server.ws_url()), await Client.open(server.ws_url())
    await unified.subscribe(f"agent:{agent['id']}")
    await collection.subscribe("agents", f"agent:{agent['id']}")  # two matching topics, still once
    unified_elsewhere = await Client.open(server.ws_url())
    await unified_elsewhere.subscribe(f"agent:{other['id']}")

    if origin == "bus":
        updated = await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": "renamed"})
    else:
        updated = AgentOut(**{**agent, "name": "renamed"}).model_dump()
        server.run(server.runtime.legacy.broadcast("agent", agent["id"], frames.flat("agent_updated", updated)))

    assert await legacy_ping_flush(legacy) == [frames.flat("agent_updated", updated)]
    for client in (unified, collection):
        got = await unified_ping_flush(client)
        assert [(f["type"], f["data"]) for f in got] == [("agent_updated", updated)]
    assert await legacy_ping_flush(legacy_elsewhere) == []
    assert await unified_ping_flush(unified_elsewhere) == []
    legacy_serves = stage in ("off", "shadow")
    assert deliveries(server, "agent_updated", "legacy", "sent") == (1 if legacy_serves else 0)
    assert deliveries(server, "agent_updated", "unified", "sent") == (2 if legacy_serves else 3)
    await legacy.close()
    await legacy_elsewhere.close()
    for unified_client in (unified, collection, unified_elsewhere):
        await unified_client.close()


async def test_an_unknown_legacy_frame_is_delivered_the_old_way_and_counted(server: RunningServer) -> None:
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    legacy = LegacyClient(f"ws://127.0.0.1:{server.port}")
    await legacy.open_thread(thread["id"])
    typing = {"type": "typing_indicator", "thread_id": thread["id"], "user": "bob"}
    server.run(server.runtime.legacy.broadcast("thread", thread["id"], typing))
    assert await legacy_ping_flush(legacy) == [typing]
    registry = server.runtime.registry
    assert registry.get_sample_value("wsmigrate_bridge_events_total",
                                     {"event_type": "unknown", "outcome": "skipped"}) == 1
    assert deliveries(server, "unknown", "legacy", "sent") == 1
    await legacy.close()
