"""The demo app `/` in a real browser: one socket for the whole session, live views, recovery."""

from __future__ import annotations

import asyncio
import time

import pytest
from playwright.async_api import Page, expect

from examples.chat.responder import reply_text
from tests import support
from tests.browser.support import Rest, SocketLog, kill_unified_connections, rest_client
from tests.conftest import ServerFactory
from tests.support import RunningServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROUND_TRIPS = 20


async def dashboard_ready(page: Page) -> None:
    await page.locator("[data-view=dashboard][data-ready]").wait_for()


async def shows(page: Page, selector: str) -> None:
    """Wait until `selector` matches (Playwright's in-page polling, bounded by the page timeout)."""
    await page.locator(selector).first.wait_for()


async def chat_ready(page: Page, thread_id: int) -> None:
    await page.locator(f"[data-view=chat][data-thread-id='{thread_id}'][data-ready]").wait_for()


async def test_twenty_dashboard_chat_round_trips_use_one_socket_and_stay_live(
    server_factory: ServerFactory, page: Page
) -> None:
    server = server_factory()
    async with rest_client(server) as rest:
        await round_trips(server, rest, page)


async def round_trips(server: RunningServer, rest: Rest, page: Page) -> None:
    ada = await rest("POST", "/api/agents", {"name": "Ada"})
    first = await rest("POST", "/api/threads", {"agent_id": ada["id"], "title": "First chat"})
    second = await rest("POST", "/api/threads", {"agent_id": ada["id"], "title": "Second chat"})
    expected: dict[int, list[str]] = {first["id"]: [], second["id"]: []}
    sockets = SocketLog.attach(page)

    await page.goto(f"{server.http}/")
    await dashboard_ready(page)
    status = ada["status"]
    for trip in range(ROUND_TRIPS):
        for leg, thread in enumerate((first, second)):
            # Dashboard, live: an agent created over REST appears; a status changed over REST shows
            if leg == 0:
                agent = await rest("POST", "/api/agents", {"name": f"Live {trip}"})
                await shows(page, f"li[data-agent-id='{agent['id']}'] .agent-name:text-is('{agent['name']}')")
            else:
                status = "running" if status != "running" else "idle"
                await rest("PATCH", f"/api/agents/{ada['id']}", {"status": status})
                await shows(page, f"li[data-agent-id='{ada['id']}'][data-status='{status}']")

            # Chat: this thread's messages only, and a message posted over REST appears live
            await page.locator(f"a.thread-link[data-thread-id='{thread['id']}']").click()
            await chat_ready(page, thread["id"])
            await expect(page.locator(".thread-title")).to_have_text(thread["title"])
            await expect(page.locator(".agent-chip")).to_have_text(f"Ada · {status}")
            text = f"trip {trip} in {thread['title']}"
            await rest("POST", f"/api/threads/{thread['id']}/messages", {"content": text})
            expected[thread["id"]].append(text)
            await shows(page, f"#messages li.msg .body:text-is('{text}')")
            await expect(page.locator("#messages li.msg .body")).to_have_text(expected[thread["id"]])

            await page.locator("a.back").click()
            await dashboard_ready(page)

    # 80 views later: still the one socket the app opened at start-up, and nothing else
    assert sockets.urls == [server.ws_url("/api/ws")]
    assert not sockets.sockets[0].is_closed()
    stats = await page.evaluate("() => window.__app.client.stats")
    assert (stats["attempts"], stats["connects"], stats["reconnects"]) == (1, 1, 0)
    unified = await asyncio.to_thread(
        server.call, lambda: sum(1 for c in server.runtime.manager.connections() if c.kind == "unified")
    )
    assert unified == 1
    # topics were reference-counted: views came and went on the socket with subscribe/unsubscribe
    kinds = {frame["type"] for frame in sockets.sent[0]}
    assert {"subscribe", "unsubscribe"} <= kinds


async def test_streamed_run_is_complete_across_a_server_side_disconnect(
    server_factory: ServerFactory, page: Page
) -> None:
    chunks = 160
    server = server_factory()
    agent = await support.rest(server, "POST", "/api/agents", {"name": "Streamer"})
    thread = await support.rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "Long run"})
    sockets = SocketLog.attach(page)
    await page.goto(f"{server.http}/#/chat/{thread['id']}")
    await chat_ready(page, thread["id"])

    # a short run first: the view renders a streamed reply completely
    prompt = "Tell me about exactly-once delivery"
    await page.locator("#composer").fill(prompt)
    await page.locator("#send").click()
    await expect(page.locator("#messages li.msg.user .body")).to_have_text([prompt])
    await page.locator("#run-chunks").fill("24")
    await page.locator("#run-delay").fill("0")
    await page.locator("#run").click()
    short = page.locator("#messages li.msg[data-stream]").nth(0)
    await expect(short).to_have_attribute("data-state", "final")
    assert await short.get_attribute("data-chunks") == "24"
    assert await short.locator(".body").text_content() == reply_text(prompt, 24)

    # the long run: kill the connection from the server side while it streams
    await page.evaluate("""() => window.__app.client.addEventListener("close", () => {
        window.__chunksAtClose = Number(document.querySelectorAll("li.msg[data-stream]")[1].dataset.chunks);
    }, { once: true })""")
    await page.locator("#run-chunks").fill(str(chunks))
    await page.locator("#run-delay").fill("15")
    await page.locator("#run").click()
    stream = page.locator("#messages li.msg[data-stream]").nth(1)
    await page.wait_for_function(
        """() => Number(document.querySelectorAll("li.msg[data-stream]")[1]?.dataset.chunks) >= 20""", polling=20
    )
    assert await asyncio.to_thread(kill_unified_connections, server) == 1

    await expect(page.locator("#conn")).to_have_attribute("data-connects", "2")
    await expect(stream).to_have_attribute("data-state", "final", timeout=20_000)
    chunks_at_close = await page.evaluate("() => window.__chunksAtClose")
    assert 0 < chunks_at_close < chunks, "the disconnect must land mid-stream"
    # every token exactly once, in order: no gap, no duplicate, no repair from the stored message
    assert await stream.get_attribute("data-chunks") == str(chunks)
    assert await stream.locator(".body").text_content() == reply_text(prompt, chunks)
    assert await stream.get_attribute("data-repaired") is None
    await expect(page.locator("#messages li.msg")).to_have_count(3)

    # a second socket, which resubscribed with `since` and was replayed what it missed
    assert len(sockets.sockets) == 2
    assert sockets.sockets[0].is_closed()
    topic = f"thread:{thread['id']}"
    resubscribe = next(f for f in sockets.sent[1] if f["type"] == "subscribe")
    assert topic in resubscribe["topics"]
    assert resubscribe["since"][topic]["seq"] > 0
    ack = next(f for f in sockets.received[1] if f.get("type") == "subscribed")
    assert ack["positions"][topic]["recovered"] is True
    stats = await page.evaluate("() => window.__app.client.stats")
    assert stats["resyncs"] == 0


async def test_chat_refetches_over_rest_when_the_server_cannot_replay(
    server_factory: ServerFactory, page: Page
) -> None:
    server = server_factory(history_size=3)  # the server forgets all but the last 3 events of a topic
    agent = await support.rest(server, "POST", "/api/agents", {"name": "Ada"})
    thread = await support.rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "Busy"})
    sockets = SocketLog.attach(page)
    start = time.time()
    await page.clock.install(time=start)
    await page.goto(f"{server.http}/#/chat/{thread['id']}")
    await chat_ready(page, thread["id"])
    await page.clock.pause_at(start + 10)  # from here the reconnect timer waits for the test

    assert await asyncio.to_thread(kill_unified_connections, server) == 1
    await expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    missed = [f"while away {n}" for n in range(6)]  # more than the history holds
    for text in missed:
        await support.rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": text})
    await page.clock.run_for(20_000)

    await expect(page.locator("#messages li.msg .body")).to_have_text(missed)
    ack = next(f for f in sockets.received[1] if f.get("type") == "subscribed")
    assert ack["positions"][f"thread:{thread['id']}"]["recovered"] is False
    assert (await page.evaluate("() => window.__app.client.stats"))["resyncs"] >= 1


async def test_dashboard_creates_renames_sets_status_and_deletes_agents(
    server_factory: ServerFactory, page: Page
) -> None:
    server = server_factory()
    await page.goto(f"{server.http}/")
    await dashboard_ready(page)

    await page.locator("#new-agent-name").fill("Grace")
    await page.locator("#create-agent button[type=submit]").click()
    created = page.locator("li.agent", has_text="Grace")
    await expect(created).to_have_count(1)  # the REST answer and the event are one row
    agent_id = int(await created.get_attribute("data-agent-id") or 0)
    row = page.locator(f"li.agent[data-agent-id='{agent_id}']")

    await row.locator("button.edit").click()
    await row.locator("input.rename-input").fill("Grace Hopper")
    await row.locator("button.save").click()
    await expect(row.locator(".agent-name")).to_have_text("Grace Hopper")

    await row.locator("select.status-select").select_option("running")
    await expect(row.locator(".status")).to_have_text("running")
    await expect(page.locator("#summary")).to_have_text("1 agent · 1 running")
    stored = await support.rest(server, "GET", f"/api/agents/{agent_id}")
    assert (stored["name"], stored["status"]) == ("Grace Hopper", "running")

    await row.locator("button.delete").click()  # asks first (tests/browser/test_app_flows.py)
    await expect(row.locator("button.delete")).to_have_text("Confirm delete?")
    await row.locator("button.delete").click()
    await expect(page.locator("li.agent")).to_have_count(0)
    await expect(page.locator("#summary")).to_have_text("0 agents · 0 running")
    assert await support.rest(server, "GET", "/api/agents") == []


async def test_with_auth_on_the_pages_sign_in_with_the_development_session(
    server_factory: ServerFactory, page: Page
) -> None:
    server = server_factory(auth=True, dev_mode=True, demo_token="demo-browser-token")
    sockets = SocketLog.attach(page)
    await page.goto(f"{server.http}/")
    await dashboard_ready(page)  # REST answered (bearer token) and `agents` is live (?token=)
    assert sockets.urls == [server.ws_url("/api/ws?token=demo-browser-token")]
    await page.locator("#new-agent-name").fill("Owned by demo")
    await page.locator("#create-agent button[type=submit]").click()
    await expect(page.locator("li.agent .agent-name")).to_have_text(["Owned by demo"])


NAVIGATIONS_MID_STREAM = 20
STREAM_CHUNKS = 30


async def test_twenty_views_opened_mid_stream_show_every_token_exactly_once(
    server_factory: ServerFactory, page: Page
) -> None:
    """The chat view loads its snapshot (with the reply so far and the positions read before it),
    then subscribes `since` them: opened at any point of a running stream, by a full page load or
    a route change on the one socket, it shows the whole reply, each token once."""
    server = server_factory()
    async with rest_client(server) as rest:
        agent = await rest("POST", "/api/agents", {"name": "Streamer"})
        await page.goto(f"{server.http}/")
        await dashboard_ready(page)
        joined_mid_stream = 0
        for n in range(NAVIGATIONS_MID_STREAM):
            thread = await rest("POST", "/api/threads", {"agent_id": agent["id"], "title": f"Stream {n}"})
            prompt = f"tell me about streams, take {n}"
            await rest("POST", f"/api/threads/{thread['id']}/messages", {"content": prompt})
            topic = f"thread:{thread['id']}"
            watcher = await support.Client.open(server.ws_url())
            await watcher.subscribe(topic)
            await rest("POST", f"/api/threads/{thread['id']}/run", {"chunks": STREAM_CHUNKS, "delay_ms": 15})
            seen = 0
            while seen < (n * 7) % (STREAM_CHUNKS - 4):  # open the view at a different point of each run
                frame = await watcher.recv()
                seen += frame.get("type") == "stream_chunk"
            if n % 2:
                await page.goto(f"{server.http}/#/chat/{thread['id']}")  # a fresh page: a new socket
                await page.reload()
            else:
                await page.evaluate("id => { location.hash = `#/chat/${id}`; }", thread["id"])
            await chat_ready(page, thread["id"])
            reply = page.locator("#messages li.msg.assistant")
            await page.locator("#messages li.msg.assistant[data-id]").wait_for()  # the stored reply is in
            await expect(reply).to_have_count(1)
            joined_mid_stream += await reply.get_attribute("data-stream") == "true"
            await expect(reply.locator(".body")).to_have_text(reply_text(prompt, STREAM_CHUNKS))
            assert await reply.get_attribute("data-repaired") is None, f"view {n}: the stream showed other text"
            assert await reply.get_attribute("data-partial") is None, f"view {n}: the stream was joined mid-run"
            await watcher.close()
            await page.evaluate("() => { location.hash = '#/'; }")
            await dashboard_ready(page)
        # Most views opened while the reply was streaming (the snapshot had a run in flight).
        assert joined_mid_stream >= NAVIGATIONS_MID_STREAM * 3 // 4
