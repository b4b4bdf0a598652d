"""The direct transport of `wsmigrate serve` (bridge.ws_protocol): which outbox a socket gets, and
frames written past the protocol library still meeting the WebSocket specification."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from examples.chat.declaration import ChatEvent
from tests.conftest import ServerFactory
from tests.support import CHAT, Client, rest
from wsmigrate.unified.outbox import AsgiOutbox
from wsmigrate.unified.outbox_direct import DirectOutbox, flush_scheduler


@pytest.mark.parametrize(("direct", "outbox_type"), [(True, DirectOutbox), (False, AsgiOutbox)])
async def test_each_socket_gets_the_outbox_its_server_supports(
    server_factory: ServerFactory, direct: bool, outbox_type: type,
) -> None:
    server = server_factory(direct=direct)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    unified = await Client.open(server.ws_url())
    await unified.subscribe("agents")
    legacy = await connect(f"{server.ws_url()}?thread_id={thread['id']}")
    await legacy.recv()  # thread_history: the legacy socket is registered
    kinds = server.call(lambda: {c.kind: type(c.outbox) for c in server.runtime.manager.connections()})
    assert kinds == {"unified": outbox_type, "legacy_thread": outbox_type}
    await unified.close()
    await legacy.close()


async def test_a_client_that_negotiated_deflate_reads_direct_frames(server_factory: ServerFactory) -> None:
    """Outbox frames leave uncompressed (RSV1 clear) even on a connection that negotiated
    permessage-deflate, which RFC 7692 allows: the client reads events and replies, in order."""
    server = server_factory(deflate=True)
    client = await Client.open(server.ws_url(), compression="deflate")
    assert client.ws.protocol.extensions, "permessage-deflate was not negotiated"
    await client.subscribe("agents")
    prompt = "z" * 4000  # compressible, were it compressed
    agent = await rest(server, "POST", "/api/agents", {"name": "z", "system_prompt": prompt})
    created = await client.expect("agent_created")
    assert created["data"]["id"] == agent["id"]
    assert created["data"]["system_prompt"] == prompt
    await client.send({"type": "ping", "message_id": "p"})
    assert (await client.expect("pong"))["message_id"] == "p"
    await rest(server, "DELETE", f"/api/agents/{agent['id']}")
    assert (await client.expect("agent_deleted"))["data"]["id"] == agent["id"]
    await client.close()


@pytest.mark.parametrize("window_ms", [0, 20])
async def test_a_stream_published_one_event_per_loop_turn_arrives_whole_and_in_order(
    server_factory: ServerFactory, window_ms: int,
) -> None:
    """`WSMIGRATE_WRITE_COALESCE_MS` reaches the server loop's outboxes; with a window, the tokens of a
    reply streamed one per loop turn leave several to a write (unified/outbox_direct.py), and a
    real client still reads every one once, in order, with seqs that follow each other."""
    server = server_factory(write_coalesce_ms=window_ms)
    assert server.call(lambda: flush_scheduler().coalesce_s) == window_ms / 1000
    agent = await rest(server, "POST", "/api/agents", {"name": "s"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    client = await Client.open(server.ws_url())
    await client.subscribe(f"thread:{thread['id']}")

    async def stream(count: int) -> None:
        for index in range(count):
            await server.runtime.bus.publish(CHAT.create(ChatEvent.STREAM_CHUNK, {
                "thread_id": thread["id"], "message_id": "m", "index": index, "chunk": f"t{index}"}))
            await asyncio.sleep(0)  # one event per loop turn

    server.run(stream(200))
    chunks = [await client.expect("stream_chunk") for _ in range(200)]
    assert [c["data"]["index"] for c in chunks] == list(range(200))
    seqs = [c["seq"] for c in chunks]
    assert seqs == list(range(seqs[0], seqs[0] + 200))
    await client.close()
