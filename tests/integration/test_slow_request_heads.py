"""Slowloris: sockets that never finish their request head are closed after the bound and counted,
while a WebSocket client opened before them keeps receiving and new requests are served."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from tests.conftest import ServerFactory
from tests.support import Client, rest

SLOW_SOCKETS = 30
HEAD_TIMEOUT_S = 0.5


async def test_sockets_with_a_partial_request_head_are_closed_and_counted(server_factory: ServerFactory) -> None:
    server = server_factory(request_head_timeout_s=HEAD_TIMEOUT_S)
    agent = await rest(server, "POST", "/api/agents", {"name": "Ref"})
    reference = await Client.open(server.ws_url())  # its head completed: the timer must not touch it
    await reference.subscribe(f"agent:{agent['id']}")

    slow = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(SLOW_SOCKETS)]
    for _, writer in slow:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and nothing more
        await writer.drain()
    async with asyncio.timeout(10):  # each is closed by the server: EOF, with no response at all
        assert [await reader.read() for reader, _ in slow] == [b""] * SLOW_SOCKETS
    for _, writer in slow:
        writer.close()

    text = generate_latest(server.runtime.registry).decode()
    assert f"wsmigrate_http_head_timeouts_total {float(SLOW_SOCKETS)}" in text
    # Past the bound, the WebSocket opened before is alive and new requests are served.
    await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": "Ref 2"})
    assert (await reference.expect("agent_updated"))["data"]["name"] == "Ref 2"
    await reference.close()
