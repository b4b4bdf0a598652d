"""Every page at a phone's width (390 px), a tablet's (768 px) and a desktop's (1280 px): no sideways
scroll, and every control visible and within the window's width, ready to take a click."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, ViewportSize, expect

from tests.browser.conftest import PageFactory
from tests.browser.support import assert_no_horizontal_scroll, assert_reachable, legacy_thread_socket_served
from tests.browser.test_unified_app import chat_ready, dashboard_ready
from tests.conftest import ServerFactory
from tests.support import ADMIN_TOKEN, RunningServer, rest, set_stage

pytestmark = pytest.mark.asyncio(loop_scope="session")

WIDTHS = [390, 768, 1280]
# Content that pushes a layout sideways when it cannot wrap: a long name, an unbroken word.
LONG_NAME = "Barbara Liskov, substitution principle and CLU"
UNBROKEN = "https://example.com/" + "x" * 160


def viewport(width: int) -> ViewportSize:
    return {"width": width, "height": 844 if width < 700 else 800}


async def seed(server: RunningServer) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name, status in [("Ada", "running"), (LONG_NAME, "error"), ("x" * 60, "offline")]:
        ids[name] = (await rest(server, "POST", "/api/agents", {"name": name, "status": status}))["id"]
    for title in ("Release notes", "A chat whose title is long enough to need two lines", "Onboarding"):
        ids[title] = (await rest(server, "POST", "/api/threads", {"agent_id": ids["Ada"], "title": title}))["id"]
    chat = ids["Release notes"]
    await rest(server, "POST", f"/api/threads/{chat}/messages", {"content": f"Read {UNBROKEN} first."})
    await rest(server, "POST", f"/api/threads/{chat}/messages", {"role": "assistant", "content": "Done. " * 40})
    return ids


async def check_top_bar(page: Page, home: str) -> None:
    await assert_reachable(page.locator(".brand"), page.locator("#nav-dashboard"),
                           page.locator(f".topbar nav a[href='{home}']"), page.locator("#conn"))


async def check_dashboard(page: Page, other_app: str) -> None:
    await assert_no_horizontal_scroll(page)
    await check_top_bar(page, other_app)
    rows = page.locator("#agent-list li.agent")
    await expect(rows).to_have_count(3)
    await assert_reachable(
        page.locator("#new-agent-name"), page.locator("#create-agent button[type=submit]"),
        rows.locator("select.status-select"), rows.locator("button.edit"), rows.locator("button.delete"),
        rows.locator("button.new-chat"), rows.locator("a.thread-link"))
    # an armed delete says more, in place: the confirming tap lands where the first one did
    first = rows.first
    delete = first.locator("button.delete")
    before = await delete.bounding_box()
    await delete.click()  # at the button's centre
    await expect(delete).to_have_text("Confirm delete?")
    await assert_reachable(delete)
    after = await delete.bounding_box()
    assert before is not None
    assert after is not None
    x, y = before["x"] + before["width"] / 2, before["y"] + before["height"] / 2
    assert after["x"] <= x <= after["x"] + after["width"], (before, after)
    assert after["y"] <= y <= after["y"] + after["height"], (before, after)
    await delete.press("Escape")
    await expect(delete).to_have_text("Delete")
    # the rename form replaces the name in its row: it fits there too
    await first.locator("button.edit").click()
    await assert_reachable(first.locator("input.rename-input"), first.locator("button.save"),
                           first.locator(".rename button:not(.save)"))
    await assert_no_horizontal_scroll(page)
    await first.locator(".rename button:not(.save)").click()


async def check_chat(page: Page, other_app: str) -> None:
    await assert_no_horizontal_scroll(page)
    await check_top_bar(page, other_app)
    await expect(page.locator("#messages li.msg")).to_have_count(2)
    await assert_reachable(page.locator("a.back"), page.locator(".agent-chip"), page.locator("#composer"),
                           page.locator("#send"), page.locator("#run"), page.locator("#run-chunks"),
                           page.locator("#run-delay"), page.locator("#messages li.msg").last)


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_app_fits_the_window(server_factory: ServerFactory, open_page: PageFactory, width: int) -> None:
    server = server_factory()
    ids = await seed(server)
    page = await open_page(viewport=viewport(width))
    await page.goto(f"{server.http}/")
    await dashboard_ready(page)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    await check_dashboard(page, "/legacy")

    await page.locator(f"a.thread-link[data-thread-id='{ids['Release notes']}']").click()
    await chat_ready(page, ids["Release notes"])
    await check_chat(page, "/legacy")


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_legacy_app_fits_the_window(server_factory: ServerFactory, open_page: PageFactory,
                                              width: int) -> None:
    server = server_factory()
    ids = await seed(server)
    page = await open_page(viewport=viewport(width))
    await page.goto(f"{server.http}/legacy")
    await dashboard_ready(page)
    await check_dashboard(page, "/")

    if not await legacy_thread_socket_served(server, ids["Release notes"]):
        pytest.skip("the legacy path (/api/ws?thread_id=...) is not served by this server yet")
    await page.locator(f"a.thread-link[data-thread-id='{ids['Release notes']}']").click()
    await chat_ready(page, ids["Release notes"])
    await check_chat(page, "/")


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_console_fits_the_window(server_factory: ServerFactory, open_page: PageFactory,
                                           width: int) -> None:
    """The console at its widest: the kill switch engaged over configured stages, so each stage cell
    carries its notes ("kill switch", "configured: ...") and each row two labelled buttons."""
    server = server_factory(admin_token=ADMIN_TOKEN)
    for event_type, stage in [("agent_created", "complete"), ("agent_status_changed", "live"),
                              ("message_created", "shadow")]:
        await set_stage(server, event_type, stage)
    await rest(server, "POST", "/api/admin/flags/kill", token=ADMIN_TOKEN)
    page = await open_page(viewport=viewport(width))
    await page.goto(f"{server.http}/ops?admin_token={ADMIN_TOKEN}")
    table = page.locator("#ops-table")
    await expect(table).to_have_attribute("data-state", "ready")
    await expect(page.locator("#kill-state")).to_have_attribute("data-state", "engaged")
    await expect(page.locator("#ops-rows tr[data-type='agent_status_changed']")).to_have_attribute(
        "data-source", "kill_switch")

    await assert_no_horizontal_scroll(page)
    rows = page.locator("#ops-rows tr[data-type]")
    assert await rows.count() >= 10
    checked = await assert_reachable(
        page.locator(".brand"), page.locator(".topbar nav a"), page.locator("#pause"), page.locator("#status"),
        page.locator("#admin-token"), page.locator("#use-token"), page.locator("#forget-token"),
        page.locator("#kill-button"), rows.locator("button.rollback"), rows.locator("button.promote"))
    assert checked == 8 + 2 * await rows.count()
    await assert_no_horizontal_scroll(page)  # scrolling the buttons into view widened nothing

    if width >= 1280:
        # a desktop window shows the whole table: nothing overflows its card, nothing scrolls in it
        fit = await table.evaluate("""table => {
            const card = table.getBoundingClientRect();
            const cells = [...table.querySelectorAll("th, td")].map((cell) => cell.getBoundingClientRect());
            return {scroll: table.scrollWidth, client: table.clientWidth,
                    outside: cells.filter((c) => c.left < card.left - 0.5 || c.right > card.right + 0.5).length};
        }""")
        assert fit["scroll"] <= fit["client"], f"the table needs {fit['scroll']} px in its {fit['client']} px card"
        assert fit["outside"] == 0, f"{fit['outside']} cells stick out of the table's card"
