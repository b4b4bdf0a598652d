"""Several servers on one Redis: shared flags, and every client on every server gets every event."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from examples.chat.declaration import ChatEvent
from tests.redis_server import bus_url
from tests.support import ADMIN_TOKEN, Client, RunningServer, rest, set_stage
from wsmigrate.bridge.stages import Stage, resolve


async def test_a_flag_change_is_in_force_on_every_server_within_a_second(
    redis_url: str, redis_prefix: str, server_factory: Any
) -> None:
    servers: list[RunningServer] = [server_factory(bus_url=bus_url(redis_url, redis_prefix), admin_token=ADMIN_TOKEN)
                                    for _ in range(3)]
    arrived = {id(s): threading.Event() for s in servers}
    for server in servers:
        server.runtime.flags.add_listener(
            lambda doc, done=arrived[id(server)]: done.set()
            if resolve(doc, ChatEvent.MESSAGE_CREATED).stage is Stage.SHADOW else None)
    started = time.monotonic()
    await set_stage(servers[0], "message_created", "shadow", force=False)
    for server in servers:
        assert await asyncio.to_thread(arrived[id(server)].wait, 1.0), "not in force within 1 s"
    elapsed = time.monotonic() - started
    assert elapsed < 1.0
    revisions = {s.runtime.registry.get_sample_value("wsmigrate_flags_revision") for s in servers}
    assert revisions == {1.0}
    audit = await rest(servers[2], "GET", "/api/admin/flags/audit", token=ADMIN_TOKEN)
    assert [(a["event_type"], a["revision"]) for a in audit] == [("message_created", 1)]


async def test_clients_on_different_servers_get_every_event_once_in_order(
    redis_url: str, redis_prefix: str, server_factory: Any
) -> None:
    url = bus_url(redis_url, redis_prefix)
    first: RunningServer = server_factory(bus_url=url)
    second: RunningServer = server_factory(bus_url=url, database_url=first.chat.settings.database_url)
    agent = await rest(first, "POST", "/api/agents", {"name": "a"})
    thread = await rest(first, "POST", "/api/threads", {"agent_id": agent["id"]})
    topic = f"thread:{thread['id']}"
    clients = [await Client.open(s.ws_url()) for s in (first, second, first, second)]
    for client in clients:
        await client.subscribe(topic)
    posted = []
    for index in range(40):  # publishers on both servers, interleaved
        server = (first, second)[index % 2]
        posted.append((await rest(server, "POST", f"/api/threads/{thread['id']}/messages",
                                  {"content": str(index)}))["id"])
    for client in clients:
        frames = [await client.recv() for _ in range(40)]
        assert [f["data"]["id"] for f in frames] == posted
        seqs = [f["seq"] for f in frames]
        assert seqs == list(range(seqs[0], seqs[0] + 40))
        await client.send({"type": "ping", "message_id": "end"})
        assert await client.recv() == {"type": "pong", "message_id": "end"}  # nothing twice
        await client.close()
