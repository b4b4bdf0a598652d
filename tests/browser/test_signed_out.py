"""Refusals the pages must show instead of retrying: with auth on, a page without a valid token gets
401 from REST and its sockets closed with 4401; from an origin not allowed, sockets close with 4403.
Either way the page says why (and how to sign in), its badge shows a final state, not
"reconnecting", and it stops opening sockets."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import SocketLog
from tests.browser.test_unified_app import dashboard_ready
from tests.conftest import ServerFactory
from tests.support import RunningServer, rest

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Longer than the unified client's longest backoff (10 s) several times over: a client that still
# retried would have opened sockets again within it.
RETRY_WINDOW_MS = 60_000


def users(server: RunningServer) -> dict[str, str]:
    """name -> token of two users of an auth-on server."""
    return {name: server.chat.users.ensure_user(name)[1] for name in ("alice", "bob")}


async def thread_of(server: RunningServer, token: str) -> int:
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada"}, token=token)
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "Plans"}, token=token)
    return int(thread["id"])


async def after_the_retry_window(page: Page) -> None:
    """Run every timer due in the next RETRY_WINDOW_MS (the page's clock is installed), then let
    the page finish what they started (a reconnect awaits its token before opening the socket)."""
    await page.clock.run_for(RETRY_WINDOW_MS)
    await page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 0))")
    await page.clock.run_for(1_000)


async def expect_sign_in_hint(page: Page, *, token_refused: bool = False) -> None:
    notice = page.locator("#notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_have_attribute("data-kind", "unauthenticated")
    await expect(notice).to_contain_text("Sign in: open this page with ?token=<your token>")
    await expect(notice).to_contain_text("var/demo-token")  # where a development server keeps one
    await expect(notice.locator(".refused-token")).to_have_count(1 if token_refused else 0)
    await expect(page.get_by_text("No agents yet")).to_be_hidden()


async def open_without_a_token(server_factory: ServerFactory, page: Page,
                               route: str) -> tuple[Any, int, SocketLog]:
    """An auth-on server with one user's thread, and `route` of it opened with no token (on the
    page's fake clock, so the retry window can be skipped through)."""
    server = server_factory(auth=True)
    thread_id = await thread_of(server, users(server)["alice"])
    sockets = SocketLog.attach(page)
    await page.clock.install()
    await page.goto(server.http + route.format(thread=thread_id))
    return server, thread_id, sockets


@pytest.mark.parametrize("route", ["/", "/#/chat/{thread}"])
async def test_the_app_without_a_token_says_sign_in_and_stops(server_factory: ServerFactory, page: Page,
                                                             route: str) -> None:
    server, _, sockets = await open_without_a_token(server_factory, page, route)
    await expect_sign_in_hint(page)
    badge = page.locator("#conn")
    await expect(badge).to_have_attribute("data-state", "refused")
    await expect(badge).to_have_text("○ signed out")
    if "chat" in route:
        await expect(page.locator("[data-view=chat]")).to_have_attribute("data-signed-out", "true")
        for control in ("#composer", "#send", "#run"):
            await expect(page.locator(control)).to_be_disabled()
        await expect(page.locator(".chat-notice")).to_be_hidden()  # the page's notice is the one message
    else:
        await expect(page.locator("[data-view=dashboard]")).to_have_attribute("data-signed-out", "true")
        await expect(page.locator("#new-agent-name")).to_be_disabled()

    await after_the_retry_window(page)
    await expect(badge).to_have_text("○ signed out")
    client = await page.evaluate("() => { const c = window.__app.client;"
                                 " return {state: c.state, attempts: c.stats.attempts, refusal: c.refusal}; }")
    assert client["state"] == "closed"
    assert client["attempts"] == 1
    assert client["refusal"]["code"] == 4401
    assert sockets.urls == [server.ws_url()]


async def test_a_refused_token_is_said_so_and_can_be_forgotten(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory(auth=True)
    alice = users(server)["alice"]
    await thread_of(server, alice)

    # a valid ?token= signs in, and is remembered for the next visit
    await page.goto(f"{server.http}/?token={alice}")
    await dashboard_ready(page)
    await expect(page.locator("li.agent .agent-name")).to_have_text(["Ada"])
    await page.goto(f"{server.http}/")
    await dashboard_ready(page)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    await expect(page.locator("#notice")).to_be_hidden()

    # a wrong one (typed, or remembered and revoked since): the page says the token was refused
    await page.goto(f"{server.http}/?token=not-a-token")
    await expect_sign_in_hint(page, token_refused=True)
    await expect(page.locator("#conn")).to_have_text("○ signed out")
    await page.locator("#notice .forget-token").click()
    await page.wait_for_url(f"{server.http}/")
    await expect_sign_in_hint(page, token_refused=False)
    assert await page.evaluate("() => localStorage.getItem('wsmigrate.token')") is None


@pytest.mark.parametrize("route", ["/legacy", "/legacy#/chat/{thread}"])
async def test_the_legacy_page_without_a_token_says_sign_in_and_stops(server_factory: ServerFactory, page: Page,
                                                                     route: str) -> None:
    """The dashboard reads REST first (401: no socket at all); the chat opens its socket first
    (closed with 4401): either way the hint, a final badge, and no further socket."""
    _, thread_id, sockets = await open_without_a_token(server_factory, page, route)
    await expect_sign_in_hint(page)
    badge = page.locator("#conn")
    await expect(badge).to_have_attribute("data-state", "refused")
    await expect(badge).to_contain_text("○ signed out")
    if "chat" in route:
        for control in ("#composer", "#send", "#run"):
            await expect(page.locator(control)).to_be_disabled()
        await expect(page.locator(".chat-notice")).to_be_hidden()
        opened = 1
    else:
        await expect(page.locator("#new-agent-name")).to_be_disabled()
        opened = 0
    await expect(badge).to_have_attribute("data-opened", str(opened))

    await after_the_retry_window(page)
    # another view would only be refused again: it opens no socket either (a chat opens its socket
    # before reading REST; it is marked signed out once it decided not to)
    other = "dashboard" if "chat" in route else "chat"
    await page.evaluate("(hash) => { location.hash = hash; }", "#/" if other == "dashboard" else f"#/chat/{thread_id}")
    await expect(page.locator(f"#view [data-view={other}]")).to_have_attribute("data-signed-out", "true")
    await expect(badge).to_have_attribute("data-opened", str(opened))
    assert len(sockets.sockets) == opened


@pytest.mark.parametrize("route", ["/", "/legacy#/chat/{thread}"])
async def test_a_page_from_an_origin_not_allowed_says_so_and_stops(server_factory: ServerFactory, page: Page,
                                                                  route: str) -> None:
    """Sockets from this page's origin are refused with 4403 "origin not allowed" (REST still answers)."""
    server = server_factory(allowed_origins="https://app.example.com")
    thread_id = await thread_of(server, "")
    sockets = SocketLog.attach(page)
    await page.clock.install()
    await page.goto(server.http + route.format(thread=thread_id))

    notice = page.locator("#notice")
    await expect(notice).to_have_attribute("data-kind", "forbidden")
    await expect(notice).to_contain_text(f"does not allow pages served from {server.http} to open sockets")
    await expect(notice).to_contain_text("WSMIGRATE_ALLOWED_ORIGINS")
    badge = page.locator("#conn")
    await expect(badge).to_have_attribute("data-state", "refused")
    await expect(badge).to_contain_text("refused · origin not allowed")

    await after_the_retry_window(page)
    await expect(badge).to_contain_text("refused · origin not allowed")
    assert len(sockets.sockets) == 1
    if route == "/":
        stats = await page.evaluate("() => window.__app.client.stats")
        assert stats["attempts"] == 1
