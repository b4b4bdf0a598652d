"""The legacy page `/legacy` in a real browser: the churn the refactor removes, one socket per view."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import Rest, SocketLog, legacy_thread_socket_served, rest_client
from tests.browser.test_unified_app import ROUND_TRIPS, chat_ready, dashboard_ready, shows
from tests.conftest import ServerFactory
from tests.support import RunningServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_legacy_navigation_opens_one_socket_per_view(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory()
    async with rest_client(server) as rest:
        await legacy_round_trips(server, rest, page)


async def legacy_round_trips(server: RunningServer, rest: Rest, page: Page) -> None:
    ada = await rest("POST", "/api/agents", {"name": "Ada"})
    first = await rest("POST", "/api/threads", {"agent_id": ada["id"], "title": "First chat"})
    second = await rest("POST", "/api/threads", {"agent_id": ada["id"], "title": "Second chat"})
    if not await legacy_thread_socket_served(server, first["id"]):
        pytest.skip("the legacy path (/api/ws?thread_id=...) is not served by this server yet")
    expected: dict[int, list[str]] = {first["id"]: [], second["id"]: []}
    sockets = SocketLog.attach(page)

    await page.goto(f"{server.http}/legacy")
    await dashboard_ready(page)
    views = [f"agent_id={ada['id']}"]
    for trip in range(ROUND_TRIPS):
        for thread in (first, second):
            await page.locator(f"a.thread-link[data-thread-id='{thread['id']}']").click()
            await chat_ready(page, thread["id"])  # its thread_history arrived on its own socket
            views.append(f"thread_id={thread['id']}")
            await expect(page.locator("#messages li.msg .body")).to_have_text(expected[thread["id"]])
            text = f"trip {trip} in {thread['title']}"
            await rest("POST", f"/api/threads/{thread['id']}/messages", {"content": text})
            expected[thread["id"]].append(text)
            await shows(page, f"#messages li.msg .body:text-is('{text}')")

            await page.locator("a.back").click()
            await dashboard_ready(page)
            views.append(f"agent_id={ada['id']}")

    # one socket per view, in navigation order, each closed when its view went away
    assert sockets.urls == [server.ws_url(f"/api/ws?{view}") for view in views]
    assert len(sockets.sockets) == 4 * ROUND_TRIPS + 1
    for ws in sockets.sockets[:-1]:
        if not ws.is_closed():
            await ws.wait_for_event("close")
    assert not sockets.sockets[-1].is_closed()
    assert await page.locator("#conn").get_attribute("data-opened") == str(len(views))
