"""Golden tests: every legacy frame shape, through real sockets on a running server."""

from __future__ import annotations

import re
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from examples.chat.legacy_client import LegacyClient
from examples.chat.responder import reply_text
from tests.conftest import ServerFactory
from tests.support import Client, RunningServer, rest


@pytest.fixture(params=["direct", "asgi"])
def server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> RunningServer:
    """Every test here runs on both outboxes: direct transport writes (`wsmigrate serve`) and the
    ASGI-send fallback (any other server)."""
    return server_factory(direct=request.param == "direct")

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MESSAGE_KEYS = {"id", "thread_id", "role", "content", "timestamp"}


def ws_base(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


async def make_thread(server: RunningServer, first_message: str | None = "hi") -> tuple[dict[str, Any], dict[str, Any]]:
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada", "system_prompt": "p"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "t"})
    if first_message:
        await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": first_message})
    return agent, thread


def assert_message_shape(message: dict[str, Any], thread_id: int, role: str, content: str) -> None:
    assert set(message) == MESSAGE_KEYS
    assert message["thread_id"] == thread_id
    assert message["role"] == role
    assert message["content"] == content
    assert TIMESTAMP.match(message["timestamp"]), message["timestamp"]


async def test_opening_a_thread_socket_sends_thread_history(server: RunningServer) -> None:
    _, thread = await make_thread(server, "hi")
    client = LegacyClient(ws_base(server))
    history = await client.open_thread(thread["id"])
    assert set(history) == {"type", "thread_id", "messages"}
    assert history["type"] == "thread_history"
    assert history["thread_id"] == thread["id"]
    assert len(history["messages"]) == 1
    assert_message_shape(history["messages"][0], thread["id"], "user", "hi")
    await client.close()


async def test_a_new_message_is_a_thread_message_frame(server: RunningServer) -> None:
    _, thread = await make_thread(server, None)
    client = LegacyClient(ws_base(server))
    await client.open_thread(thread["id"])
    posted = await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "hello"})
    frame = await client.recv()
    assert set(frame) == {"type", "thread_id", "message"}
    assert frame["type"] == "thread_message"
    assert frame["thread_id"] == thread["id"]
    assert_message_shape(frame["message"], thread["id"], "user", "hello")
    assert frame["message"]["id"] == posted["id"]
    await client.close()


async def test_streaming_frames(server: RunningServer) -> None:
    _, thread = await make_thread(server, "stream please")
    client = LegacyClient(ws_base(server))
    await client.open_thread(thread["id"])
    run = await rest(server, "POST", f"/api/threads/{thread['id']}/run", {"chunks": 30})
    # The old shapes, plus the run's id and each chunk's index (added so a view loaded mid-run
    # knows which chunks its snapshot holds; old clients ignore them).
    run_id = run["run_id"]
    assert await client.recv() == {"type": "stream_start", "thread_id": thread["id"], "run_id": run_id}
    chunks = [await client.recv() for _ in range(30)]
    for index, chunk in enumerate(chunks):
        assert set(chunk) == {"type", "thread_id", "content", "run_id", "index"}
        assert chunk["type"] == "stream_chunk"
        assert (chunk["run_id"], chunk["index"]) == (run_id, index)
    assert "".join(c["content"] for c in chunks) == reply_text("stream please", 30)
    assert await client.recv() == {"type": "stream_end", "thread_id": thread["id"], "run_id": run_id}
    final = await client.recv()
    assert final["type"] == "thread_message"
    assert_message_shape(final["message"], thread["id"], "assistant", reply_text("stream please", 30))
    await client.close()


async def test_agent_socket_gets_flat_agent_and_thread_frames(server: RunningServer) -> None:
    agent, first = await make_thread(server, None)
    client = LegacyClient(ws_base(server))
    await client.open_agent(agent["id"])
    await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": "Ada 2", "status": "running"})
    status_changed = await client.recv()
    updated = await client.recv()
    for frame, kind in ((status_changed, "agent_status_changed"), (updated, "agent_updated")):
        assert frame["type"] == kind
        assert frame["agent_id"] == agent["id"]
        assert frame["name"] == "Ada 2"
        assert frame["status"] == "running"
        assert "data" not in frame  # flat, not the unified envelope
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "new"})
    created = await client.recv()
    assert created["type"] == "thread_created"
    assert created["thread_id"] == thread["id"]
    assert created["agent_id"] == agent["id"]
    assert created["title"] == "new"
    await rest(server, "PATCH", f"/api/threads/{thread['id']}", {"title": "renamed"})
    assert (await client.recv())["type"] == "thread_updated"
    await rest(server, "DELETE", f"/api/threads/{thread['id']}")
    assert (await client.recv())["type"] == "thread_deleted"
    await rest(server, "DELETE", f"/api/agents/{agent['id']}")
    # The agent's remaining thread goes with it, and is announced first.
    gone = await client.recv()
    assert (gone["type"], gone["thread_id"]) == ("thread_deleted", first["id"])
    deleted = await client.recv()
    assert deleted["type"] == "agent_deleted"
    assert deleted["agent_id"] == agent["id"]
    await client.close()


async def test_ping_pong_echoes_the_timestamp_and_errors_have_the_old_shape(server: RunningServer) -> None:
    _, thread = await make_thread(server)
    client = LegacyClient(ws_base(server))
    await client.open_thread(thread["id"])
    assert await client.ping(1234567) == {"type": "pong", "timestamp": 1234567}
    await client.send({"type": "subscribe_thread", "thread_id": 99, "message_id": "m-9"})
    assert await client.recv() == {"type": "error", "message_id": "m-9", "error": "Thread 99 not found",
                                   "details": None}
    await client.send({"type": "nonsense", "message_id": "m-10"})
    error = await client.recv()
    assert error["type"] == "error"
    assert error["message_id"] == "m-10"
    assert error["error"] == "Unknown message type: nonsense"
    assert await client.ping(5) == {"type": "pong", "timestamp": 5}  # still open
    await client.close()


async def test_subscribe_thread_and_send_message_on_one_socket(server: RunningServer) -> None:
    _, first = await make_thread(server, "one")
    _, second = await make_thread(server, "two")
    client = LegacyClient(ws_base(server))
    await client.open_thread(first["id"])
    history = await client.subscribe_thread(second["id"])
    assert history["thread_id"] == second["id"]
    assert [m["content"] for m in history["messages"]] == ["two"]
    await client.send_message(second["id"], "from the socket")
    echoed = await client.expect("thread_message")
    assert echoed["thread_id"] == second["id"]
    assert_message_shape(echoed["message"], second["id"], "user", "from the socket")
    await rest(server, "POST", f"/api/threads/{first['id']}/messages", {"content": "first again"})
    assert (await client.expect("thread_message"))["thread_id"] == first["id"]
    stored = await rest(server, "GET", f"/api/threads/{second['id']}/messages")
    assert [m["content"] for m in stored] == ["two", "from the socket"]
    await client.close()


@pytest.mark.parametrize("query", ["thread_id=424242", "agent_id=424242", "thread_id=abc"])
async def test_a_socket_for_a_missing_resource_gets_an_error_and_1008(server: RunningServer, query: str) -> None:
    client = await Client.open(f"ws://127.0.0.1:{server.port}/api/ws?{query}")
    error = await client.recv()
    assert error["type"] == "error"
    assert error["error"].endswith("not found")
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.ws.close_code == 1008
    assert server.call(lambda: (server.runtime.legacy.connection_count, server.runtime.manager.connection_count)) == (
        0, 0)


async def test_legacy_and_unified_sockets_side_by_side(server: RunningServer) -> None:
    _, thread = await make_thread(server, None)
    legacy = LegacyClient(ws_base(server))
    await legacy.open_thread(thread["id"])
    unified = await Client.open(server.ws_url())
    await unified.subscribe(f"thread:{thread['id']}")
    v2 = await Client.open(server.ws_url("/api/ws/v2"))
    await v2.subscribe(f"thread:{thread['id']}")
    await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "both"})
    legacy_frame = await legacy.recv()
    unified_frame = await unified.recv()
    assert legacy_frame["type"] == "thread_message"
    assert legacy_frame["message"]["content"] == "both"
    assert unified_frame["type"] == "message_created"
    assert unified_frame["data"] == legacy_frame["message"]
    assert (await v2.recv())["event_id"] == unified_frame["event_id"]
    await legacy.close()
    await unified.close()
    await v2.close()


async def test_every_navigation_opens_a_new_legacy_socket(server: RunningServer) -> None:
    agent, thread = await make_thread(server)
    client = LegacyClient(ws_base(server))
    for _ in range(5):
        await client.open_agent(agent["id"])
        await client.open_thread(thread["id"])
    assert client.sockets_opened == client.navigations == 10
    await client.close()
    opened = server.runtime.registry.get_sample_value("wsmigrate_connections_opened_total", {"kind": "legacy_thread"})
    assert opened == 5
