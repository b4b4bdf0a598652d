"""What the demo pages do when things go wrong: a send that fails keeps its text, a delete asks first,
a chat that is gone (never existed, deleted while open) says so once and stops taking input."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from playwright.async_api import Dialog, Page, Request, Route, expect

from tests.browser.support import close_connections, legacy_thread_socket_served
from tests.browser.test_unified_app import chat_ready, dashboard_ready
from tests.conftest import ServerFactory
from tests.support import RunningServer, rest

pytestmark = pytest.mark.asyncio(loop_scope="session")

MESSAGES = "**/api/threads/*/messages"
CONFIRM_MS = 4000  # ui.js CONFIRM_MS: how long an armed delete waits for its confirming click
GONE = {  # ui.js CHAT_GONE
    "deleted": "This chat no longer exists: it was deleted.",
    "missing": "This chat does not exist, or you do not have access to it.",
}


def no_dialogs(page: Page) -> list[str]:
    """Collects (and dismisses) window dialogs: the pages must not use alert() or confirm()."""
    seen: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", dismiss)
    return seen


async def chat_of(server: RunningServer) -> tuple[int, int]:
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "Plans"})
    return agent["id"], thread["id"]


# -- the composer ---------------------------------------------------------------------------------


async def test_a_failed_send_keeps_the_text_and_says_why(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory()
    _, thread_id = await chat_of(server)
    dialogs = no_dialogs(page)
    await page.goto(f"{server.http}/#/chat/{thread_id}")
    await chat_ready(page, thread_id)
    composer, error = page.locator("#composer"), page.locator("#composer-error")
    text = "Ship the migration on Tuesday"

    async def fail(route: Route) -> None:
        await route.fulfill(status=500, content_type="text/plain", body="Internal Server Error")

    # the server fails (500, not even JSON): the text stays, the reason shows next to the composer
    await page.route(MESSAGES, fail)
    await composer.fill(text)
    await page.locator("#send").click()
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("Not sent: the server answered HTTP 500")
    await expect(composer).to_have_value(text)
    await expect(composer).to_be_editable()
    await expect(page.locator("#send")).to_be_enabled()

    # the network fails (Enter sends too)
    await page.unroute(MESSAGES)
    await page.route(MESSAGES, lambda route: route.abort("internetdisconnected"))
    await composer.press("Enter")
    await expect(error).to_contain_text("the server could not be reached")
    await expect(composer).to_have_value(text)

    # the server refuses it (404 with a detail): that detail is the reason shown
    await page.unroute(MESSAGES)
    await page.route(MESSAGES, lambda route: route.fulfill(
        status=404, content_type="application/json", body=json.dumps({"detail": f"Thread {thread_id} not found"})))
    await page.locator("#send").click()
    await expect(error).to_contain_text(f"Not sent: Thread {thread_id} not found")
    await expect(composer).to_have_value(text)
    await expect(page.locator("#messages li.msg")).to_have_count(0)
    assert await rest(server, "GET", f"/api/threads/{thread_id}/messages") == []

    # the server is back: the send succeeds, the message shows once, the composer and the error clear
    await page.unroute(MESSAGES)
    await page.locator("#send").click()
    await expect(page.locator("#messages li.msg .body")).to_have_text([text])
    await expect(composer).to_have_value("")
    await expect(error).to_be_hidden()
    assert [m["content"] for m in await rest(server, "GET", f"/api/threads/{thread_id}/messages")] == [text]
    assert dialogs == []


async def test_a_legacy_send_without_its_socket_keeps_the_text(server_factory: ServerFactory, page: Page) -> None:
    """The legacy chat sends over its own socket, confirmed by the server's broadcast of the stored
    message: the text goes only then; once the server closed the socket, a send fails and keeps it."""
    server = server_factory()
    _, thread_id = await chat_of(server)
    if not await legacy_thread_socket_served(server, thread_id):
        pytest.skip("the legacy path (/api/ws?thread_id=...) is not served by this server yet")
    await page.goto(f"{server.http}/legacy#/chat/{thread_id}")
    await chat_ready(page, thread_id)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    await page.locator("#composer").fill("First")
    await page.locator("#send").click()
    await expect(page.locator("#messages li.msg .body")).to_have_text(["First"])
    await expect(page.locator("#composer")).to_have_value("")

    assert await asyncio.to_thread(close_connections, server, "legacy_thread") == 1
    await expect(page.locator("#conn")).to_have_attribute("data-state", "closed")

    await page.locator("#composer").fill("Still here?")
    await page.locator("#send").click()
    await expect(page.locator("#composer-error")).to_contain_text("Not sent: this view's socket is not open")
    await expect(page.locator("#composer")).to_have_value("Still here?")
    await expect(page.locator("#messages li.msg")).to_have_count(1)


# -- deleting asks first --------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["/", "/legacy"])
async def test_deleting_an_agent_asks_first(server_factory: ServerFactory, page: Page, app: str) -> None:
    server = server_factory()
    agent_id, _ = await chat_of(server)
    dialogs = no_dialogs(page)
    deletes: list[str] = []

    def record(request: Request) -> None:
        if request.method == "DELETE":
            deletes.append(request.url)

    page.on("request", record)
    await page.clock.install()  # the test moves time past the confirmation window itself
    await page.goto(f"{server.http}{app}")
    await dashboard_ready(page)
    row = page.locator(f"li.agent[data-agent-id='{agent_id}']")
    delete = row.locator("button.delete")

    # one click only asks; leaving the button (or waiting) takes the question back
    await delete.click()
    await expect(delete).to_have_text("Confirm delete?")
    await expect(delete).to_have_attribute("data-armed", "true")
    await page.locator("#new-agent-name").click()
    await expect(delete).to_have_text("Delete")
    await delete.click()
    await expect(delete).to_have_attribute("data-armed", "true")
    await page.clock.fast_forward(CONFIRM_MS + 100)
    await expect(delete).to_have_attribute("data-armed", "false")
    await expect(delete).to_have_text("Delete")
    await expect(row).to_have_count(1)
    assert [a["id"] for a in await rest(server, "GET", "/api/agents")] == [agent_id]
    assert deletes == []

    # two clicks delete
    await delete.click()
    await delete.click()
    await expect(row).to_have_count(0)
    assert await rest(server, "GET", "/api/agents") == []
    assert deletes == [f"{server.http}/api/agents/{agent_id}"]
    assert dialogs == []


# -- a chat that is gone --------------------------------------------------------------------------


async def expect_closed_chat(page: Page, text: str) -> None:
    """One notice, no transient flash, and nothing that takes input."""
    notice = page.locator(".chat-notice")
    await expect(notice).to_have_count(1)
    await expect(notice).to_be_visible()
    await expect(notice.locator(".text")).to_have_text(text)
    await expect(page.locator(".flash")).to_have_count(0)
    for control in ("#composer", "#send", "#run", "#run-chunks", "#run-delay"):
        await expect(page.locator(control)).to_be_disabled()
    await expect(notice.locator("a[href='#/']")).to_be_visible()


@pytest.mark.parametrize(("app", "reports"), [("/", 1), ("/legacy", 2)])
async def test_a_chat_that_does_not_exist_says_so_once(server_factory: ServerFactory, page: Page,
                                                       app: str, reports: int) -> None:
    """The unified chat learns it from its REST view (404); the legacy one twice, from its socket
    (closed: "not found") and from REST: the notice is the same single one either way."""
    server = server_factory()
    await chat_of(server)
    dialogs = no_dialogs(page)
    await page.goto(f"{server.http}{app}#/chat/999999")
    view = page.locator("[data-view=chat][data-thread-id='999999']")
    await expect(view).to_have_attribute("data-gone-reports", str(reports))  # every source has reported
    await expect(view).to_have_attribute("data-gone", "missing")
    await expect_closed_chat(page, GONE["missing"])
    assert dialogs == []


@pytest.mark.parametrize(("app", "deleted"), [("/", "thread"), ("/", "agent"), ("/legacy", "thread"),
                                              ("/legacy", "agent")])
async def test_a_chat_deleted_while_open_stops_taking_input(server_factory: ServerFactory, page: Page,
                                                            app: str, deleted: str) -> None:
    """Deleted by another client (REST), the thread itself or its agent (whose threads go with it):
    the unified chat hears `thread_deleted` on its topic, closes and leaves its topics. A legacy
    thread socket is not told of the deletion (the legacy protocol tells the agent's socket): that
    chat learns it when the server refuses its next send, and closes the same way, the text kept."""
    server = server_factory()
    agent_id, thread_id = await chat_of(server)
    if app == "/legacy" and not await legacy_thread_socket_served(server, thread_id):
        pytest.skip("the legacy path (/api/ws?thread_id=...) is not served by this server yet")
    await page.goto(f"{server.http}{app}#/chat/{thread_id}")
    await chat_ready(page, thread_id)
    await page.locator("#composer").fill("a draft")
    await expect(page.locator("#composer")).to_be_enabled()

    await rest(server, "DELETE", f"/api/threads/{thread_id}" if deleted == "thread" else f"/api/agents/{agent_id}")
    if app == "/legacy":
        await page.locator("#send").click()
    await expect(page.locator("[data-view=chat]")).to_have_attribute("data-gone", "deleted")
    await expect_closed_chat(page, GONE["deleted"])
    await expect(page.locator("#composer")).to_have_value("a draft")  # disabled, not wiped
    await expect(page.locator("#composer-error")).to_be_hidden()  # the notice is the one message
    if app == "/":
        topics: list[Any] = await page.evaluate("() => window.__app.client.topics")
        assert f"thread:{thread_id}" not in topics, topics
        assert f"agent:{agent_id}" not in topics, topics
