"""The contract of bridge/server/static/wsclient.js, exercised in Chromium against the real server.

The page is a bare same-origin document (`/healthz`) that imports the module, so every socket the
page creates is one the client under test created.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from playwright.async_api import Page

from tests.browser.support import SocketLog, kill_unified_connections, push_to_unified_clients
from tests.conftest import ServerFactory
from tests.support import RunningServer, rest

pytestmark = pytest.mark.asyncio(loop_scope="session")

IMPORT = "window.wsc = await import('/static/wsclient.js');"


async def open_blank(page: Page, server: RunningServer) -> SocketLog:
    sockets = SocketLog.attach(page)
    await page.goto(f"{server.http}/healthz")
    return sockets


async def test_refcounted_topics_offline_subscriptions_queue_token_and_heartbeat(
    server_factory: ServerFactory, page: Page
) -> None:
    server = server_factory()
    sockets = await open_blank(page, server)
    queued = await page.evaluate(f"""async () => {{
        {IMPORT}
        const client = window.client = wsc.createWsClient({{ autoStart: false, token: "t0ken", maxQueue: 3 }});
        window.got = [];
        window.offA = client.subscribe("agents", (e) => got.push(["a", e.data.name]));
        window.offB = client.subscribe("agents", (e) => got.push(["b", e.data.name]));
        const queued = [1, 2, 3, 4, 5].map((n) => client.send({{ type: "ping", message_id: `q${{n}}` }}));
        client.start();
        return queued;
    }}""")
    assert queued == [True, True, True, False, False]  # bounded while not connected
    await page.wait_for_function("() => client.isLive('agents')")
    assert sockets.urls == [server.ws_url("/api/ws?token=t0ken")]
    # made offline, sent on connect: one subscribe for the two handlers, then the queued frames
    assert sockets.sent[0][:4] == [
        {"type": "subscribe", "topics": ["agents"], "message_id": sockets.sent[0][0]["message_id"]},
        {"type": "ping", "message_id": "q1"},
        {"type": "ping", "message_id": "q2"},
        {"type": "ping", "message_id": "q3"},
    ]

    await rest(server, "POST", "/api/agents", {"name": "Ada"})
    await page.wait_for_function("() => got.length === 2")
    assert sorted(map(tuple, await page.evaluate("() => got"))) == [("a", "Ada"), ("b", "Ada")]

    # the first handler leaving sends nothing; the last one sends `unsubscribe`
    await page.evaluate("async () => { offA(); await client.ping(); }")
    assert [f["type"] for f in sockets.sent[0]].count("unsubscribe") == 0
    await page.evaluate("async () => { offB(); offB(); await client.ping(); }")
    assert [f["topics"] for f in sockets.sent[0] if f["type"] == "unsubscribe"] == [["agents"]]

    # the server's heartbeat ping is answered with a pong
    async with sockets.sockets[0].expect_event("framesent", lambda p: json.loads(p) == {"type": "pong"}, timeout=5000):
        await asyncio.to_thread(push_to_unified_clients, server, {"type": "ping", "ts": 1})
    assert len(sockets.sockets) == 1


async def test_reconnect_backoff_is_exponential_capped_jittered_and_never_tight(
    server_factory: ServerFactory, page: Page
) -> None:
    server = server_factory()
    sockets = await open_blank(page, server)
    # Every connection is refused at once: a socket stand-in (the `WebSocket` option) that closes
    # with 1006 right after it is created, so only the client's own timers pace the attempts.
    delays = await page.evaluate(f"""async () => {{
        {IMPORT}
        class Refused {{
            constructor(url) {{ queueMicrotask(() => this.onclose?.({{ code: 1006, reason: "", wasClean: false }})); }}
            send() {{}}
            close() {{}}
        }}
        const run = (random, n) => new Promise((resolve) => {{
            const seen = [];
            const client = wsc.createWsClient({{ WebSocket: Refused, random,
                backoffInitialMs: 4, backoffMaxMs: 32, backoffMinMs: 2 }});
            client.addEventListener("close", (e) => {{
                if (!e.detail.willReconnect) return;
                seen.push(e.detail.delayMs);
                if (seen.length === n) {{ client.close(); resolve([seen, client.stats.attempts]); }}
            }});
        }});
        return [await run(() => 0.999, 7), await run(() => 0, 4), await run(() => 0.5, 7)];
    }}""")
    assert sockets.sockets == []
    assert [attempts for _, attempts in delays] == [7, 4, 7]  # one attempt per delay, no extra
    top, floor, half = (seen for seen, _ in delays)
    assert top == [3, 7, 15, 31, 31, 31, 31]  # ceilings 4, 8, 16, 32 (capped) under full jitter
    assert floor == [2, 2, 2, 2]  # jitter never goes under the floor: no tight loop
    assert half == [2, 4, 8, 16, 16, 16, 16]


async def test_close_is_final_no_reconnect(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory()
    await page.clock.install()
    sockets = await open_blank(page, server)
    await page.evaluate(f"async () => {{ {IMPORT} window.client = wsc.createWsClient(); }}")
    await page.wait_for_function("() => client.state === 'open'")
    async with sockets.sockets[0].expect_event("close", timeout=5000):
        await page.evaluate("() => client.close()")
    await page.clock.run_for(60_000)  # any reconnect timer would have fired by now
    assert await page.evaluate("() => [client.state, client.stats.attempts]") == ["closed", 1]
    assert len(sockets.sockets) == 1


async def test_a_definitive_refusal_stops_the_client_and_says_why(server_factory: ServerFactory, page: Page) -> None:
    """4401 (no valid token) ends the client with a `refused` event and no reconnect timer; every
    other close is retried (test_reconnect_backoff_is_exponential_capped_jittered_and_never_tight)."""
    server = server_factory(auth=True)
    await page.clock.install()
    sockets = await open_blank(page, server)
    refusal = await page.evaluate(f"""async () => {{
        {IMPORT}
        return await new Promise((resolve) => {{
            window.client = wsc.createWsClient({{ token: "not-a-valid-token", onRefused: resolve }});
        }});
    }}""")
    assert refusal == {"code": 4401, "reason": "authentication required", "kind": "unauthenticated"}
    await page.clock.run_for(60_000)  # any reconnect timer would have fired by now
    assert await page.evaluate("() => [client.state, client.stats.attempts, client.refusal.kind]") == [
        "closed", 1, "unauthenticated"]
    assert len(sockets.sockets) == 1


async def test_an_event_of_two_topics_moves_both_positions_so_a_reconnect_replays_nothing(
    server_factory: ServerFactory, page: Page
) -> None:
    server = server_factory()
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada"})
    sockets = await open_blank(page, server)
    await page.evaluate(f"""async (id) => {{
        {IMPORT}
        const client = window.client = wsc.createWsClient();
        window.got = {{ all: [], one: [] }};
        client.subscribe("agents", (e) => got.all.push(e.event_id));
        client.subscribe(`agent:${{id}}`, (e) => got.one.push(e.event_id));
    }}""", agent["id"])
    await page.wait_for_function("id => client.isLive('agents') && client.isLive(`agent:${id}`)", arg=agent["id"])
    await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": "Ada Lovelace"})
    await page.wait_for_function("() => got.all.length === 1 && got.one.length === 1")
    [event_id] = await page.evaluate("() => got.one")

    # The event came once, on agent:<id> (first in rule order), carrying its position on both topics:
    # the client moved both, so the resubscribe after the reconnect asks from past it on each.
    [frame] = [f for f in sockets.received[0] if f.get("event_id") == event_id]
    assert frame["topic"] == f"agent:{agent['id']}"
    assert set(frame["positions"]) == {f"agent:{agent['id']}", "agents"}
    assert await page.evaluate("() => client.position('agents')") == {**frame["positions"]["agents"],
                                                                       "event_id": event_id}
    assert await asyncio.to_thread(kill_unified_connections, server) == 1
    await page.wait_for_function("id => client.stats.connects === 2 && client.isLive('agents')", arg=agent["id"])
    await page.evaluate("() => client.ping()")  # frames are ordered: a replay would be in before the pong
    [resubscribe] = [f for f in sockets.sent[1] if f["type"] == "subscribe"]
    # ... with the id of that event: the server replays only if it is still at that position
    assert resubscribe["since"]["agents"] == {**frame["positions"]["agents"], "event_id": event_id}
    assert [f for f in sockets.received[1] if f.get("event_id") == event_id] == []
    assert await page.evaluate("() => [got.all.length, got.one.length, client.stats.duplicatesDropped]") == [1, 1, 0]



async def test_an_event_a_sharded_server_sends_as_one_frame_per_shard_reaches_each_topics_handlers_once(
    server_factory: ServerFactory, page: Page
) -> None:
    """docs/protocol.md, "Sharded bus": the same event_id on two frames, each with its own topic."""
    server = server_factory()
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    topics = [f"thread:{thread['id']}", f"agent:{agent['id']}"]
    await open_blank(page, server)
    await page.evaluate(f"""async ([thread, agent]) => {{
        {IMPORT}
        const client = window.client = wsc.createWsClient();
        window.got = {{ thread: [], agent: [], both: [], typed: [] }};
        const both = (e) => got.both.push(e.topic);
        client.subscribe(thread, (e) => got.thread.push(e.seq));
        client.subscribe(agent, (e) => got.agent.push(e.seq));
        client.subscribe(thread, both);
        client.subscribe(agent, both);
        client.on("thread_updated", (e) => got.typed.push(e.event_id));
    }}""", topics)
    await page.wait_for_function("([t, a]) => client.isLive(t) && client.isLive(a)", arg=topics)
    epochs = await page.evaluate("([t, a]) => [client.position(t).epoch, client.position(a).epoch]", topics)
    base = {"v": 1, "type": "thread_updated", "event_id": "split-1", "ts": 1, "data": {"id": thread["id"]}}
    seqs = await page.evaluate("([t, a]) => [client.position(t).seq, client.position(a).seq]", topics)
    for topic, epoch, seq in zip(topics, epochs, seqs, strict=True):
        frame = {**base, "topic": topic, "seq": seq + 1, "epoch": epoch}
        for _ in range(2):  # the second copy of each frame is a duplicate (a resend)
            await asyncio.to_thread(push_to_unified_clients, server, frame)
    await page.evaluate("() => client.ping()")  # frames are ordered: all four are in before the pong
    got = await page.evaluate("() => got")
    assert (got["thread"], got["agent"]) == ([seqs[0] + 1], [seqs[1] + 1])  # each topic's handlers once
    assert got["both"] == topics  # a handler of both topics: once per frame
    assert got["typed"] == ["split-1"]  # type handlers: once per event
    assert await page.evaluate("([t, a]) => [client.position(t).seq, client.position(a).seq]", topics) == \
        [seqs[0] + 1, seqs[1] + 1]
    assert await page.evaluate("() => [client.stats.events, client.stats.duplicatesDropped]") == [1, 2]


async def test_a_view_joining_a_live_topic_from_an_older_snapshot_gets_exactly_what_followed_it(
    server_factory: ServerFactory, page: Page
) -> None:
    server = server_factory()
    sockets = await open_blank(page, server)
    await page.evaluate(f"""async () => {{
        {IMPORT}
        const client = window.client = wsc.createWsClient();
        window.got = {{ early: [], late: [] }};
        client.subscribe("agents", (e) => got.early.push(e.data.name));
    }}""")
    await page.wait_for_function("() => client.isLive('agents')")
    # The late view's snapshot is read here; three agents are created before it subscribes.
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        response = (await http.get("/api/agents")).raise_for_status()
    since = json.loads(response.headers["Wsmigrate-Positions"])["agents"]
    for name in ("a1", "a2", "a3"):
        await rest(server, "POST", "/api/agents", {"name": name})
    await page.wait_for_function("() => got.early.length === 3")
    await page.evaluate("""since => {
        window.offLate = client.subscribe("agents", (e) => got.late.push(e.data.name), {
            since, contains: (e) => e.data.name === "a1",  // as if the snapshot already held a1
        });
    }""", since)
    await page.wait_for_function("() => client.isLive('agents') && got.late.length === 2")
    await rest(server, "POST", "/api/agents", {"name": "a4"})
    await page.wait_for_function("() => got.early.length === 4 && got.late.length === 3")
    await page.evaluate("() => client.ping()")
    assert await page.evaluate("() => got") == {"early": ["a1", "a2", "a3", "a4"], "late": ["a2", "a3", "a4"]}
    stats = await page.evaluate("() => client.stats")
    assert (stats["rewinds"], stats["duplicatesDropped"], stats["snapshotSkipped"]) == (1, 0, 1)
    # The socket had passed the late view's position: the topic was re-subscribed from it, and the
    # server replayed events the connection had before (on agent:<id>), because `since` asked.
    rewind = [f for f in sockets.sent[0] if f["type"] in ("subscribe", "unsubscribe")][-2:]
    assert [f["type"] for f in rewind] == ["unsubscribe", "subscribe"]
    assert rewind[1]["since"] == {"agents": since}
