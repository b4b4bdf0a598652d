"""Per-connection limits on both paths, and the server heartbeat."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from examples.chat.legacy_client import LegacyClient
from tests.support import Client, RunningServer, rest


async def test_topics_per_connection_are_capped(server_factory: Any) -> None:
    server: RunningServer = server_factory(max_topics=3)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    client = await Client.open(server.ws_url())
    await client.send({"type": "subscribe", "topics": ["agents", "system", "probe", "agents"], "message_id": "a"})
    assert (await client.recv())["topics"] == ["agents", "system", "probe"]
    await client.send({"type": "subscribe", "topics": ["system", f"agent:{agent['id']}"], "message_id": "b"})
    error = await client.recv()
    assert (error["code"], error["topic"]) == ("too_many_topics", f"agent:{agent['id']}")
    assert (await client.recv())["topics"] == ["system"]  # already held: still fine
    await client.close()


async def test_subscribe_rate_is_limited_per_connection(server_factory: Any) -> None:
    server: RunningServer = server_factory(subscribe_rate_per_s=0.001, subscribe_burst=3)
    client = await Client.open(server.ws_url())
    for index in range(3):
        await client.subscribe("agents", message_id=f"s{index}")
    await client.send({"type": "subscribe", "topics": ["system"], "message_id": "s3"})
    error = await client.recv()
    assert (error["code"], error["message_id"]) == ("rate_limited", "s3")
    other = await Client.open(server.ws_url())  # another connection has its own budget
    await other.subscribe("system")
    await client.send({"type": "ping", "message_id": "still"})
    assert await client.recv() == {"type": "pong", "message_id": "still"}
    assert server.runtime.registry.get_sample_value(
        "wsmigrate_protocol_errors_total", {"path": "unified", "code": "rate_limited"}) == 1
    await client.close()
    await other.close()


async def test_legacy_limits_frame_size_depth_and_subscribe_rate(server_factory: Any) -> None:
    server: RunningServer = server_factory(subscribe_rate_per_s=0.001, subscribe_burst=2)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    client = LegacyClient(f"ws://127.0.0.1:{server.port}")
    await client.open_thread(thread["id"])
    await client.send({"type": "ping", "timestamp": 1, "pad": "x" * (64 * 1024)})
    assert "larger than" in (await client.expect("error"))["error"]
    assert client.ws is not None
    await client.ws.send("[" * 40 + "]" * 40)
    assert "nested deeper" in (await client.expect("error"))["error"]
    await client.subscribe_thread(thread["id"])
    await client.subscribe_thread(thread["id"])
    await client.send({"type": "subscribe_thread", "thread_id": thread["id"], "message_id": "third"})
    error = await client.expect("error")
    assert (error["message_id"], error["error"]) == ("third", "Too many subscribe requests; slow down")
    assert await client.ping(7) == {"type": "pong", "timestamp": 7}
    await client.close()


async def test_deep_json_is_a_bad_message_on_the_unified_path(server: RunningServer) -> None:
    client = await Client.open(server.ws_url())
    await client.send(json.dumps({"type": "ping", "message_id": "d"})[:-1] + ', "x": ' + "[" * 40 + "]" * 40 + "}")
    error = await client.recv()
    assert (error["code"], error["message_id"]) == ("bad_message", "d")
    await client.close()


async def answer_pings(client: Client, pings: list[int], enough: asyncio.Event) -> None:
    """Play a live client: answer every server ping."""
    while True:
        frame = await client.recv()
        if frame["type"] == "ping":
            pings.append(frame["ts"])
            await client.send({"type": "pong"})
            if len(pings) >= 4:
                enough.set()


async def test_a_client_that_ignores_the_heartbeat_is_closed_with_4408(server_factory: Any) -> None:
    server: RunningServer = server_factory(heartbeat_interval_s=0.2, heartbeat_timeout_s=0.3)
    answering = await Client.open(server.ws_url())
    await answering.subscribe("agents")
    pings: list[int] = []
    enough = asyncio.Event()
    responder = asyncio.create_task(answer_pings(answering, pings, enough))
    silent = await Client.open(server.ws_url())
    await silent.subscribe("agents")
    ping = await silent.recv()  # the server pings a quiet client...
    assert ping["type"] == "ping"
    assert isinstance(ping["ts"], int)
    with pytest.raises(ConnectionClosed):  # ...and closes it when no answer comes in time
        await silent.recv()
    assert silent.ws.close_code == 4408
    await asyncio.wait_for(enough.wait(), 10)  # the answering client outlives several intervals
    responder.cancel()
    closed = server.runtime.registry.get_sample_value("wsmigrate_connections_closed_total",
                                                      {"kind": "unified", "reason": "heartbeat_timeout"})
    assert closed == 1
    assert server.call(lambda: server.runtime.manager.connection_count) == 1  # silent one's state released
    await answering.close()
