"""Screenshots of the pages for the README, written under docs/screenshots/ by the test run: each
page at a desktop's size (1280 x 720: dashboard.png, chat.png, legacy.png; ops.png is written by
test_ops_page.py) and at a phone's (390 x 844 CSS px, drawn at 2x: *-phone.png)."""

from __future__ import annotations

import pytest
from playwright.async_api import Locator, Page, expect

from examples.chat.responder import reply_text
from tests.browser.conftest import PHONE, SCREENSHOTS, PageFactory
from tests.browser.support import Rest, assert_no_horizontal_scroll, legacy_thread_socket_served, rest_client
from tests.browser.test_unified_app import chat_ready, dashboard_ready
from tests.conftest import ServerFactory
from tests.support import ADMIN_TOKEN, RunningServer, set_stage

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROMPT = "Summarise the migration plan in one paragraph."


async def seed(rest: Rest) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name, status in [("Ada", "running"), ("Grace", "idle"), ("Linus", "error"), ("Barbara", "offline")]:
        ids[name] = (await rest("POST", "/api/agents", {"name": name, "status": status}))["id"]
    for agent, title in [("Ada", "Release notes"), ("Ada", "Incident review"), ("Grace", "Onboarding")]:
        ids[title] = (await rest("POST", "/api/threads", {"agent_id": ids[agent], "title": title}))["id"]
    for title in ("Release notes", "Incident review"):
        await rest("POST", f"/api/threads/{ids[title]}/messages", {"content": PROMPT})
    await rest("POST", f"/api/threads/{ids['Incident review']}/messages",
               {"role": "assistant", "content": reply_text(PROMPT, 18)})
    return ids


async def test_screenshots_of_each_page(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory()
    async with rest_client(server) as rest:
        await take_screenshots(server, rest, page)


async def open_seeded_dashboard(page: Page, server: RunningServer) -> None:
    """The dashboard of the seeded app, its four agents shown and the socket open."""
    await page.goto(f"{server.http}/")
    await dashboard_ready(page)
    await expect(page.locator("#agent-list li.agent")).to_have_count(4)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "open")


async def stream_a_reply(page: Page, thread_id: int) -> Locator:
    """From the dashboard, open the thread's chat and stream a 40-chunk reply to its end."""
    await page.locator(f"a.thread-link[data-thread-id='{thread_id}']").click()
    await chat_ready(page, thread_id)
    await page.locator("#run-chunks").fill("40")
    await page.locator("#run-delay").fill("0")
    await page.locator("#run").click()
    reply = page.locator("#messages li.msg[data-stream]")
    await expect(reply).to_have_attribute("data-state", "final")
    return reply


async def take_screenshots(server: RunningServer, rest: Rest, page: Page) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ids = await seed(rest)

    await open_seeded_dashboard(page, server)
    await page.screenshot(path=SCREENSHOTS / "dashboard.png")

    reply = await stream_a_reply(page, ids["Release notes"])
    await expect(reply.locator(".body")).to_have_text(reply_text(PROMPT, 40))
    await page.screenshot(path=SCREENSHOTS / "chat.png")

    legacy = await page.context.new_page()
    await legacy.goto(f"{server.http}/legacy")
    await dashboard_ready(legacy)
    if await legacy_thread_socket_served(server, ids["Incident review"]):
        await legacy.locator(f"a.thread-link[data-thread-id='{ids['Incident review']}']").click()
        await chat_ready(legacy, ids["Incident review"])
        await expect(legacy.locator("#messages li.msg")).to_have_count(2)
    await legacy.screenshot(path=SCREENSHOTS / "legacy.png")
    for name in ("dashboard.png", "chat.png", "legacy.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000


PHONE_SHOTS = ("dashboard-phone.png", "chat-phone.png", "legacy-phone.png", "ops-phone.png")


async def test_phone_screenshots_of_each_page(server_factory: ServerFactory, open_page: PageFactory) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    async with rest_client(server) as rest:
        ids = await seed(rest)
    for event_type, stage in [("agent_created", "complete"), ("agent_status_changed", "live"),
                              ("message_created", "shadow"), ("stream_chunk", "shadow")]:
        await set_stage(server, event_type, stage)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    phone = await open_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)

    await open_seeded_dashboard(phone, server)
    await assert_no_horizontal_scroll(phone)
    await phone.screenshot(path=SCREENSHOTS / "dashboard-phone.png")

    await stream_a_reply(phone, ids["Release notes"])
    await assert_no_horizontal_scroll(phone)
    await phone.screenshot(path=SCREENSHOTS / "chat-phone.png")

    await phone.goto(f"{server.http}/legacy")
    await dashboard_ready(phone)
    if await legacy_thread_socket_served(server, ids["Incident review"]):
        await phone.locator(f"a.thread-link[data-thread-id='{ids['Incident review']}']").click()
        await chat_ready(phone, ids["Incident review"])
        await expect(phone.locator("#messages li.msg")).to_have_count(2)
    await assert_no_horizontal_scroll(phone)
    await phone.screenshot(path=SCREENSHOTS / "legacy-phone.png")

    await phone.goto(f"{server.http}/ops?admin_token={ADMIN_TOKEN}")
    await expect(phone.locator("#ops-table")).to_have_attribute("data-state", "ready")
    await expect(phone.locator("#ops-rows tr[data-type='message_created']")).to_have_attribute("data-stage", "shadow")
    await assert_no_horizontal_scroll(phone)
    await phone.screenshot(path=SCREENSHOTS / "ops-phone.png")

    for name in PHONE_SHOTS:
        assert (SCREENSHOTS / name).stat().st_size > 10_000
