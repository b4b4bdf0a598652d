"""Authentication, ownership on both paths and REST, the origin allowlist, the per-user quota."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from examples.chat.legacy_client import LegacyClient
from tests.support import Client, RunningServer


class Users:
    """Two users with their tokens on a server with auth on."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        (_, self.alice), (_, self.bob) = (server.chat.users.ensure_user(n) for n in ("alice", "bob"))

    async def rest(self, token: str | None, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.server.http, timeout=10) as client:
            return await client.request(method, path, json=body, headers=headers)

    async def thread_of(self, token: str) -> tuple[int, int]:
        agent = (await self.rest(token, "POST", "/api/agents", {"name": "mine"})).json()
        thread = (await self.rest(token, "POST", "/api/threads", {"agent_id": agent["id"]})).json()
        return agent["id"], thread["id"]


@pytest.fixture
def users(server_factory: Any) -> Users:
    return Users(server_factory(auth=True, max_connections_per_user=3))


async def refused(url: str, **kwargs: Any) -> tuple[int | None, str]:
    """A refused socket: the handshake completes, then the server closes with the reason's code
    before sending anything (a browser can read a close code, not a refused handshake's status)."""
    client = await Client.open(url, **kwargs)
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.frames == []
    assert client.ws.close_reason is not None
    return client.ws.close_code, client.ws.close_reason


async def test_sockets_without_a_valid_token_are_refused_with_4401(users: Users) -> None:
    server = users.server
    unauthenticated = (4401, "authentication required")
    assert await refused(server.ws_url()) == unauthenticated
    assert await refused(server.ws_url() + "?token=wrong") == unauthenticated
    assert await refused(server.ws_url() + "?thread_id=1") == unauthenticated  # the legacy protocol too
    assert await refused(server.ws_url(), additional_headers={"Authorization": "Bearer wrong"}) == unauthenticated
    closed = server.runtime.registry.get_sample_value("wsmigrate_connections_closed_total",
                                                      {"kind": "unified", "reason": "auth"})
    assert closed == 3


@pytest.mark.parametrize("how", ["header", "cookie", "query"])
async def test_a_token_is_accepted_from_header_cookie_or_query(users: Users, how: str) -> None:
    url, headers = users.server.ws_url(), {}
    if how == "header":
        headers = {"Authorization": f"Bearer {users.alice}"}
    elif how == "cookie":
        headers = {"Cookie": f"wsmigrate_token={users.alice}"}
    else:
        url += f"?token={users.alice}"
    client = await Client.open(url, additional_headers=headers)
    await client.send({"type": "ping", "message_id": "p"})
    assert await client.recv() == {"type": "pong", "message_id": "p"}
    await client.close()


async def test_rest_needs_a_token_and_enforces_ownership(users: Users) -> None:
    assert (await users.rest(None, "GET", "/api/agents")).status_code == 401
    agent_id, thread_id = await users.thread_of(users.alice)
    assert [a["id"] for a in (await users.rest(users.alice, "GET", "/api/agents")).json()] == [agent_id]
    assert (await users.rest(users.bob, "GET", "/api/agents")).json() == []
    for method, path, body in [("GET", f"/api/agents/{agent_id}", None),
                               ("PATCH", f"/api/agents/{agent_id}", {"name": "stolen"}),
                               ("DELETE", f"/api/agents/{agent_id}", None),
                               ("GET", f"/api/threads/{thread_id}", None),
                               ("POST", f"/api/threads/{thread_id}/messages", {"content": "x"}),
                               ("POST", f"/api/threads/{thread_id}/run", None),
                               ("POST", "/api/threads", {"agent_id": agent_id})]:
        assert (await users.rest(users.bob, method, path, body)).status_code == 404, (method, path)
    assert (await users.rest(users.alice, "GET", f"/api/threads/{thread_id}")).status_code == 200


async def test_topic_authorisation_on_the_unified_path(users: Users) -> None:
    agent_id, thread_id = await users.thread_of(users.alice)
    bob = await Client.open(users.server.ws_url() + f"?token={users.bob}")
    await bob.send({"type": "subscribe", "topics": [f"thread:{thread_id}", f"agent:{agent_id}", "agents"],
                    "message_id": "b"})
    errors = [await bob.recv(), await bob.recv()]
    assert {(e["code"], e["topic"]) for e in errors} == {("forbidden", f"thread:{thread_id}"),
                                                          ("forbidden", f"agent:{agent_id}")}
    assert (await bob.recv())["topics"] == ["agents"]
    alice = await Client.open(users.server.ws_url() + f"?token={users.alice}")
    await alice.subscribe(f"thread:{thread_id}", "agents")
    await users.rest(users.alice, "PATCH", f"/api/agents/{agent_id}", {"name": "renamed"})
    assert (await alice.recv())["type"] == "agent_updated"
    # bob shares the `agents` topic but never sees alice's agents: a ping answer proves nothing came
    await bob.send({"type": "ping", "message_id": "after"})
    assert await bob.recv() == {"type": "pong", "message_id": "after"}
    await alice.close()
    await bob.close()


async def test_legacy_sockets_for_someone_elses_thread_or_agent_are_refused(users: Users) -> None:
    agent_id, thread_id = await users.thread_of(users.alice)
    _, bobs_thread = await users.thread_of(users.bob)
    base = f"ws://127.0.0.1:{users.server.port}"
    for query in (f"thread_id={thread_id}", f"agent_id={agent_id}"):
        client = await Client.open(f"{base}/api/ws?{query}&token={users.bob}")
        error = await client.recv()
        assert error["type"] == "error"
        assert error["error"].endswith("forbidden")
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 4403
    bob = LegacyClient(base, token=users.bob)
    await bob.open_thread(bobs_thread)
    await bob.send({"type": "subscribe_thread", "thread_id": thread_id, "message_id": "x"})
    assert (await bob.expect("error"))["error"] == f"Thread {thread_id}: forbidden"
    await bob.send({"type": "send_message", "thread_id": thread_id, "content": "hi", "message_id": "y"})
    assert (await bob.expect("error"))["message_id"] == "y"
    history = (await users.rest(users.alice, "GET", f"/api/threads/{thread_id}/messages")).json()
    assert history == []
    await bob.close()


async def test_origin_allowlist(users: Users) -> None:
    url = users.server.ws_url() + f"?token={users.alice}"
    assert await refused(url, origin="http://evil.example") == (4403, "origin not allowed")
    allowed = await Client.open(url, origin=f"http://127.0.0.1:{users.server.port}")
    await allowed.close()
    no_origin = await Client.open(url)  # not a browser: judged by its token
    await no_origin.close()


async def test_connections_per_user_are_capped_with_4429(users: Users) -> None:
    url = users.server.ws_url() + f"?token={users.alice}"
    clients = [await Client.open(url) for _ in range(3)]
    extra = await Client.open(url)
    with pytest.raises(ConnectionClosed):
        await extra.recv()
    assert extra.ws.close_code == 4429
    other_user = await Client.open(users.server.ws_url() + f"?token={users.bob}")  # others are unaffected
    await clients[0].close()
    async with asyncio.timeout(10):  # the slot is released when the server sees the close
        while True:
            replacement = await Client.open(url)
            try:
                await replacement.send({"type": "ping"})
                await replacement.recv(2)
                break
            except ConnectionClosed:
                continue
    for client in (*clients[1:], other_user, replacement):
        await client.close()


async def test_auth_off_is_announced_with_a_warning(server_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        server_factory(auth=False)
    assert "WSMIGRATE_AUTH=off" in caplog.text
