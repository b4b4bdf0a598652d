"""A committed change is announced exactly once even while Redis is down, against a real
`redis-server` that is killed and started again: requests succeed meanwhile (no 500), and the
events follow in commit order once Redis answers. A publish outside the outbox answers 503."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from examples.chat.declaration import ChatEvent
from tests.redis_server import RedisServer
from tests.support import Client, RunningServer, rest
from wsmigrate import publish_event
from wsmigrate.unified.transactional_outbox import Backlog

TIMEOUT_S = 20.0


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=True).start()
    yield server
    server.close()


async def healthz(server: RunningServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        return (await http.get("/healthz")).json()  # type: ignore[no-any-return]


async def after_sweep(server: RunningServer) -> Backlog:
    relay = server.runtime.relay
    assert relay is not None
    return await asyncio.to_thread(server.run, relay.after_sweep())  # type: ignore[no-any-return]


async def test_messages_posted_while_redis_is_down_succeed_and_are_announced_once_in_order(
    server_factory: Any, durable_redis: RedisServer,
) -> None:
    server: RunningServer = server_factory(bus_url=durable_redis.url, relay_sweep_interval_s=0.2)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    topic = f"thread:{thread['id']}"
    client = await Client.open(server.ws_url())
    await client.subscribe(topic)
    before = await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "before"})
    await client.expect("message_created")

    durable_redis.kill()
    posted = []
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        for n in range(5):
            response = await http.post(f"/api/threads/{thread['id']}/messages", json={"content": f"down {n}"})
            assert response.status_code == 201, response.text  # committed: the request succeeds
            posted.append(response.json())
        assert len((await http.get(f"/api/threads/{thread['id']}/messages")).json()) == 6
    assert (await healthz(server))["status"] == "degraded"
    async with asyncio.timeout(TIMEOUT_S):  # the relay's next sweep counts what waits
        while (await after_sweep(server)).rows < 5:
            pass
    status = await healthz(server)
    assert (status["outbox"]["backlog"], status["outbox"]["publishing_directly"]) == (5, False)

    durable_redis.start()  # with its data (append-only file): the stream goes on
    async with asyncio.timeout(TIMEOUT_S):
        while sum(f.get("type") == "message_created" for f in client.frames) < 6:
            await client.recv(TIMEOUT_S)
    await client.send({"type": "ping", "message_id": "flush"})
    await client.expect("pong")
    got = [f["data"]["id"] for f in client.frames if f.get("type") == "message_created"]
    assert got == [before["id"], *(m["id"] for m in posted)]  # each once, in commit order
    seqs = [f["seq"] for f in client.frames if f.get("type") == "message_created"]
    assert seqs == list(range(seqs[0], seqs[0] + 6))  # one stream, no gap: the socket stayed open
    outcomes = {o: server.runtime.registry.get_sample_value("wsmigrate_outbox_events_total", {"outcome": o})
                for o in ("committed", "published", "duplicate")}
    assert outcomes["committed"] == outcomes["published"]
    assert outcomes["published"] >= 6
    assert outcomes["duplicate"] == 0
    async with asyncio.timeout(TIMEOUT_S):
        while (await after_sweep(server)).rows:
            pass
    await client.close()


async def test_a_publish_outside_the_outbox_answers_503_not_500(
    server_factory: Any, durable_redis: RedisServer,
) -> None:
    server: RunningServer = server_factory(bus_url=durable_redis.url)

    @publish_event(ChatEvent.SYSTEM_STATUS)
    async def announce() -> dict[str, str]:
        return {"status": "maintenance"}

    server.app.add_api_route("/api/test/announce", announce, methods=["POST"])
    durable_redis.kill()
    async with httpx.AsyncClient(base_url=server.http, timeout=20) as http:
        response = await http.post("/api/test/announce")
    assert response.status_code == 503
    assert "may be stored without having been announced" in response.json()["detail"]
