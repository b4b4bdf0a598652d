"""No missed or out-of-order messages across reconnects; a lost history is said, never hidden."""

from __future__ import annotations

from typing import Any

from examples.chat.responder import reply_text
from tests.support import Client, RunningServer, rest

CHUNKS = 2000


async def test_reconnect_mid_stream_with_since_gives_the_exact_reply(server_factory: Any) -> None:
    server: RunningServer = server_factory(stream_delay_ms=1, history_size=5000)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    topic = f"thread:{thread['id']}"
    await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "tell me"})
    first = await Client.open(server.ws_url())
    await first.subscribe(topic)
    await rest(server, "POST", f"/api/threads/{thread['id']}/run", {"chunks": CHUNKS})
    chunks: list[str] = []
    last: dict[str, Any] = {}
    while len(chunks) < 500:  # drop the connection a quarter of the way in
        frame = await first.recv()
        last = frame
        if frame["type"] == "stream_chunk":
            chunks.append(frame["data"]["content"])
    first.ws.transport.abort()  # the network drops: no close handshake
    # ... the run keeps streaming while we are away ...
    second = await Client.open(server.ws_url())
    ack = await second.subscribe(topic, since={topic: {"epoch": last["epoch"], "seq": last["seq"]}})
    assert ack["positions"][topic]["recovered"] is True
    seqs = [last["seq"]]
    while True:
        frame = await second.recv()
        seqs.append(frame["seq"])
        if frame["type"] == "stream_chunk":
            chunks.append(frame["data"]["content"])
        if frame["type"] == "stream_end":
            break
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or a duplicate after reconnecting"
    assert "".join(chunks) == reply_text("tell me", CHUNKS)
    assert len(chunks) == CHUNKS
    await second.close()


async def test_a_since_beyond_the_kept_history_is_not_recovered(server_factory: Any) -> None:
    server: RunningServer = server_factory(history_size=10)
    agent = await rest(server, "POST", "/api/agents", {"name": "a"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    topic = f"thread:{thread['id']}"
    client = await Client.open(server.ws_url())
    ack = await client.subscribe(topic)
    position = ack["positions"][topic]
    await client.close()
    for index in range(15):
        await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": str(index)})
    again = await Client.open(server.ws_url())
    ack = await again.subscribe(topic, since={topic: position})
    assert ack["positions"][topic]["recovered"] is False  # 15 missed, 10 kept: nothing is replayed
    await again.send({"type": "ping", "message_id": "end"})
    assert await again.recv() == {"type": "pong", "message_id": "end"}  # and no partial replay came first
    await again.close()


async def test_a_server_restart_with_the_memory_bus_is_a_new_epoch(server_factory: Any, tmp_path: Any) -> None:
    database = f"sqlite:///{tmp_path}/kept.db"
    before = server_factory(database_url=database)
    agent = await rest(before, "POST", "/api/agents", {"name": "a"})
    client = await Client.open(before.ws_url())
    position = (await client.subscribe("agents"))["positions"]["agents"]
    await client.close()
    before.stop()
    after = server_factory(database_url=database)
    again = await Client.open(after.ws_url())
    ack = await again.subscribe("agents", since={"agents": position})
    assert ack["positions"]["agents"]["recovered"] is False
    assert ack["positions"]["agents"]["epoch"] != position["epoch"]
    await rest(after, "PATCH", f"/api/agents/{agent['id']}", {"name": "b"})
    assert (await again.recv())["seq"] == ack["positions"]["agents"]["seq"] + 1
    await again.close()
