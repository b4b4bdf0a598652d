"""The unified path end to end: a real server, real sockets, REST driving real events."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from examples.chat.responder import reply_text
from tests.conftest import ServerFactory
from tests.support import Client, RunningServer, StalledClient, rest


@pytest.fixture(params=["direct", "asgi"])
def server(request: pytest.FixtureRequest, server_factory: ServerFactory) -> RunningServer:
    """Every test here runs on both outboxes: direct transport writes (`wsmigrate serve`) and the
    ASGI-send fallback (any other server)."""
    return server_factory(direct=request.param == "direct")

async def test_agent_crud_frames_arrive_in_order_with_type_and_topic(server: RunningServer) -> None:
    client = await Client.open(server.ws_url())
    ack = await client.subscribe("agents", message_id="c1")
    assert ack["message_id"] == "c1"
    assert ack["topics"] == ["agents"]
    assert set(ack["positions"]["agents"]) == {"epoch", "seq"}

    agent = await rest(server, "POST", "/api/agents", {"name": "Ada", "system_prompt": "be brief"})
    await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": "Ada 2"})
    await rest(server, "DELETE", f"/api/agents/{agent['id']}")

    frames = [await client.recv() for _ in range(3)]
    assert [f["type"] for f in frames] == ["agent_created", "agent_updated", "agent_deleted"]
    assert all(f["topic"] == "agents" and f["v"] == 1 for f in frames)
    assert [f["seq"] for f in frames] == [ack["positions"]["agents"]["seq"] + i for i in (1, 2, 3)]
    assert frames[1]["data"]["name"] == "Ada 2"
    assert frames[0]["data"]["id"] == agent["id"]
    assert len({f["event_id"] for f in frames}) == 3
    await client.close()


async def test_agent_topic_and_collection_topic_deliver_once_per_connection(server: RunningServer) -> None:
    agent = await rest(server, "POST", "/api/agents", {"name": "Bo"})
    both = await Client.open(server.ws_url())
    await both.subscribe(f"agent:{agent['id']}", "agents")
    only_agent = await Client.open(server.ws_url())
    await only_agent.subscribe(f"agent:{agent['id']}")

    await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"status": "running"})
    await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": "Bo 2"})
    # status change: agent_status_changed then agent_updated; then the rename's agent_updated
    expected = ["agent_status_changed", "agent_updated", "agent_updated"]
    got_both = [await both.recv() for _ in expected]
    got_one = [await only_agent.recv() for _ in expected]
    assert [f["type"] for f in got_both] == expected
    assert [f["type"] for f in got_one] == expected
    assert {f["topic"] for f in got_one} == {f"agent:{agent['id']}"}
    # a marker event proves nothing else (no duplicate) was queued before it
    await rest(server, "DELETE", f"/api/agents/{agent['id']}")
    assert (await both.recv())["type"] == "agent_deleted"
    await both.close()
    await only_agent.close()


async def test_unsubscribe_stops_delivery(server: RunningServer) -> None:
    client = await Client.open(server.ws_url())
    await client.subscribe("agents")
    await rest(server, "POST", "/api/agents", {"name": "one"})
    assert (await client.recv())["type"] == "agent_created"
    await client.send({"type": "unsubscribe", "topics": ["agents"], "message_id": "u1"})
    assert await client.recv() == {"type": "unsubscribed", "message_id": "u1", "topics": ["agents"]}
    await rest(server, "POST", "/api/agents", {"name": "two"})
    # a ping round-trip after the publish proves no event frame was queued in between
    await client.send({"type": "ping", "message_id": "p1"})
    assert await client.recv() == {"type": "pong", "message_id": "p1"}
    await client.close()


async def test_a_run_streams_every_chunk_in_order_to_every_subscriber(server: RunningServer) -> None:
    agent = await rest(server, "POST", "/api/agents", {"name": "Cy"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "t"})
    topic = f"thread:{thread['id']}"
    clients = [await Client.open(server.ws_url()) for _ in range(3)]
    for client in clients:
        await client.subscribe(topic)
    await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "hello there"})
    accepted = await rest(server, "POST", f"/api/threads/{thread['id']}/run", {"chunks": 200})
    assert accepted["chunks"] == 200

    for client in clients:
        user_message = await client.recv()
        assert user_message["type"] == "message_created"
        assert user_message["data"]["role"] == "user"
        start = await client.recv()
        assert start["type"] == "stream_start"
        chunks = [await client.recv() for _ in range(200)]
        assert {c["type"] for c in chunks} == {"stream_chunk"}
        seqs = [start["seq"], *(c["seq"] for c in chunks)]
        assert seqs == list(range(seqs[0], seqs[0] + 201))
        assert (await client.recv())["type"] == "stream_end"
        final = await client.recv()
        assert final["type"] == "message_created"
        assert final["data"]["role"] == "assistant"
        assert "".join(c["data"]["content"] for c in chunks) == final["data"]["content"]
        assert final["data"]["content"] == reply_text("hello there", 200)
        await client.close()


async def test_run_returns_202_at_once_and_other_requests_are_served_meanwhile(
    server_factory: type,
) -> None:
    server = server_factory(stream_delay_ms=5)
    agent = await rest(server, "POST", "/api/agents", {"name": "slow"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    client = await Client.open(server.ws_url(f"/api/ws?topics=thread:{thread['id']}"))
    await client.expect("subscribed")
    await rest(server, "POST", f"/api/threads/{thread['id']}/run", {"chunks": 400})
    assert (await client.recv())["type"] == "stream_start"
    # while the run streams (400 chunks x 5 ms), REST keeps answering
    for _ in range(5):
        assert (await rest(server, "GET", "/healthz"))["status"] == "ok"
    types = [(await client.recv())["type"] for _ in range(3)]
    assert types == ["stream_chunk"] * 3
    await client.close()


async def test_bad_frames_get_errors_and_the_connection_survives(server: RunningServer) -> None:
    client = await Client.open(server.ws_url())
    cases: list[str | bytes] = [
        "{not json",
        json.dumps({"type": "dance"}),
        json.dumps({"type": "subscribe", "topics": "agents"}),
        "x" * (64 * 1024 + 1),
        b"\x00\x01binary",
    ]
    for frame in cases:
        await client.ws.send(frame)
        error = await client.recv()
        assert error["type"] == "error"
        assert error["code"] == "bad_message"
        assert error["message"]
    # per-topic errors never drop the good topics of the same request
    await client.send({"type": "subscribe", "topics": ["agents", "thread:x", "agent:999", "nope"],
                       "message_id": "m"})
    errors = [await client.recv() for _ in range(3)]
    assert {(e["code"], e["topic"], e["message_id"]) for e in errors} == {
        ("invalid_topic", "thread:x", "m"), ("not_found", "agent:999", "m"), ("invalid_topic", "nope", "m"),
    }
    ack = await client.recv()
    assert ack["type"] == "subscribed"
    assert ack["topics"] == ["agents"]
    await rest(server, "POST", "/api/agents", {"name": "still here"})
    assert (await client.recv())["type"] == "agent_created"
    await client.close()


async def test_repeated_abuse_closes_with_1008(server_factory: type) -> None:
    server = server_factory(max_bad_frames=3)
    client = await Client.open(server.ws_url())
    for _ in range(4):
        await client.send("garbage")
    errors = [await client.recv() for _ in range(4)]
    assert all(e["code"] == "bad_message" for e in errors)
    with pytest.raises(Exception) as closed:
        await client.recv()
    assert client.ws.close_code == 1008, closed.value


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "asgi"])
async def test_one_stalled_client_does_not_delay_the_others(server_factory: ServerFactory, direct: bool) -> None:
    server = server_factory(outbox_capacity=20, direct=direct)
    agent = await rest(server, "POST", "/api/agents", {"name": "busy"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    topic = f"thread:{thread['id']}"
    # The stalled client stops reading: the kernel buffers fill, then its outbox, then it is cut.
    stalled = await StalledClient.open(server, [topic])
    healthy = await Client.open(server.ws_url())
    await healthy.subscribe(topic)
    big = "x" * 60_000  # 150 x 60 kB outgrow the kernel buffers of a small-window socket
    async with asyncio.timeout(60):
        for i in range(150):
            await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": f"{i} {big}"})
            frame = await healthy.recv()  # every message reaches the healthy client without delay
            assert frame["type"] == "message_created"
            assert frame["data"]["content"].startswith(f"{i} ")
    registry = server.runtime.registry
    drops = registry.get_sample_value(
        "wsmigrate_recipient_deliveries_total",
        {"event_type": "message_created", "path": "unified", "outcome": "slow_consumer_drop"},
    )
    assert drops is not None
    assert drops >= 1
    await healthy.close()
    stalled.close()


async def test_a_subscribe_since_replays_an_event_the_connection_had_through_another_topic(
    server: RunningServer,
) -> None:
    """Events of several topics reach a connection once; but a `since` asks for a replay, which must
    hold them too (a client re-subscribing a topic from an older snapshot's position needs them)."""
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada"})
    client = await Client.open(server.ws_url())
    ack = await client.subscribe(f"agent:{agent['id']}", "agents")
    since = ack["positions"]["agents"]
    await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": "Ada L."})
    first = await client.expect("agent_updated")
    assert set(first["positions"]) == {f"agent:{agent['id']}", "agents"}
    await client.send({"type": "unsubscribe", "topics": ["agents"], "message_id": "u"})
    await client.expect("unsubscribed")
    again = await client.subscribe("agents", message_id="s2", since={"agents": since})
    assert again["positions"]["agents"]["recovered"] is True
    replayed = await client.expect("agent_updated")
    assert (replayed["event_id"], replayed["topic"]) == (first["event_id"], "agents")
    await client.close()


async def test_deleting_an_agent_announces_the_deletion_of_each_of_its_threads(server: RunningServer) -> None:
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada"})
    threads = [await rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": t}) for t in "ab"]
    client = await Client.open(server.ws_url())
    await client.subscribe(*(f"thread:{t['id']}" for t in threads))
    await rest(server, "DELETE", f"/api/agents/{agent['id']}")
    deleted = [await client.expect("thread_deleted"), await client.expect("thread_deleted")]
    assert sorted(e["data"]["id"] for e in deleted) == sorted(t["id"] for t in threads)
    await client.close()


async def read_until_closed(client: Client) -> None:
    while True:
        await client.recv()


async def test_one_subscribe_probing_many_unknown_topics_counts_as_abuse_and_is_closed(server: RunningServer) -> None:
    agent = await rest(server, "POST", "/api/agents", {"name": "Ref"})
    reference = await Client.open(server.ws_url())
    await reference.subscribe(f"agent:{agent['id']}")
    prober = await Client.open(server.ws_url())
    probe = {"type": "subscribe", "topics": [f"thread:{n}" for n in range(1000, 2000)], "message_id": "p"}
    await prober.send(probe)
    with pytest.raises(ConnectionClosed):
        await read_until_closed(prober)
    assert prober.ws.close_code == 1008
    refused = [f for f in prober.frames if f.get("type") == "error"]
    assert 10 < len(refused) <= 1000
    assert {f["code"] for f in refused} == {"not_found"}
    # A client asking for a few gone topics is not abuse; the reference client keeps receiving.
    honest = await Client.open(server.ws_url())
    await honest.send({"type": "subscribe", "topics": ["thread:999999", "thread:999998"], "message_id": "h"})
    assert (await honest.expect("subscribed"))["topics"] == []
    await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": "Ref 2"})
    assert (await reference.expect("agent_updated"))["data"]["name"] == "Ref 2"
    for client in (reference, honest):
        await client.close()
