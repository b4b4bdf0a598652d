"""Ids are bounded where they enter: REST, legacy query parameters, subscribe. An id beyond what
the database stores answers 422/404 or an error frame, never a 500 or a dropped socket (1006), and
a reference client keeps receiving meanwhile."""

from __future__ import annotations

import json

import httpx
from websockets.asyncio.client import connect

from tests.conftest import ServerFactory
from tests.support import Client, rest

HUGE = str(2**70)


async def test_ids_beyond_64_bits_are_refused_cleanly_everywhere_they_enter(server_factory: ServerFactory) -> None:
    server = server_factory()
    agent = await rest(server, "POST", "/api/agents", {"name": "Ref"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    reference = await Client.open(server.ws_url())
    await reference.subscribe(f"thread:{thread['id']}")

    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        for method, path, body in [
            ("GET", f"/api/agents/{HUGE}", None), ("PATCH", f"/api/agents/{HUGE}", {"name": "x"}),
            ("DELETE", f"/api/agents/{HUGE}", None), ("GET", f"/api/threads/{HUGE}", None),
            ("GET", f"/api/threads/{HUGE}/messages", None), ("GET", f"/api/threads/{HUGE}/view", None),
            ("POST", f"/api/threads/{HUGE}/messages", {"content": "x"}), ("POST", f"/api/threads/{HUGE}/run", {}),
            ("GET", f"/api/threads?agent_id={HUGE}", None), ("POST", "/api/threads", {"agent_id": 2**70}),
            ("GET", "/api/threads/0/view", None), ("GET", "/api/threads/-3", None),
        ]:
            response = await http.request(method, path, json=body)
            assert response.status_code in (404, 422), (method, path, response.status_code, response.text)

    for query in (f"thread_id={HUGE}", f"agent_id={HUGE}", "thread_id=-1", "thread_id=abc"):
        async with connect(server.ws_url(f"/api/ws?{query}"), open_timeout=10) as legacy:
            error = json.loads(await legacy.recv())
            assert error["type"] == "error", (query, error)
            await legacy.wait_closed()
            assert legacy.close_code == 1008, (query, legacy.close_code)

    probe = await Client.open(server.ws_url())
    await probe.send({"type": "subscribe", "topics": [f"thread:{HUGE}"], "message_id": "h"})
    refused = await probe.expect("error")
    assert (refused["code"], refused["topic"]) == ("invalid_topic", f"thread:{HUGE}")
    await probe.close()

    posted = await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "still here"})
    event = await reference.expect("message_created")
    assert event["data"]["id"] == posted["id"]
    await reference.close()
