"""The migration console `/ops` in a real browser, against a real server with an admin token."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from examples.chat.simulation import Scenario
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import ServerFactory
from tests.support import ADMIN_TOKEN, Client, RunningServer, rest, set_stage
from wsmigrate.bridge.ops.simulate import simulate

pytestmark = pytest.mark.asyncio(loop_scope="session")


def row(page: Page, event_type: str) -> Locator:
    return page.locator(f"#ops-rows tr[data-type='{event_type}']")


async def open_console(page: Page, server: RunningServer) -> None:
    await page.goto(f"{server.http}/ops?admin_token={ADMIN_TOKEN}")
    await expect(page.locator("#ops-table")).to_have_attribute("data-state", "ready")


async def flags(server: RunningServer) -> Any:
    return await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)


async def test_report_endpoint_needs_the_admin_token(server_factory: ServerFactory) -> None:
    """The data behind the page: admin token required; counts per type and connections per kind."""
    server = server_factory(admin_token=ADMIN_TOKEN)
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await rest(server, "GET", "/api/admin/report", token="wrong")
    assert refused.value.response.status_code == 401
    client = await Client.open(server.ws_url())
    try:
        await client.subscribe("agents")
        await rest(server, "POST", "/api/agents", {"name": "Ada"})
        await client.expect("agent_created")
        report = await rest(server, "GET", "/api/admin/report", token=ADMIN_TOKEN)
    finally:
        await client.close()
    # every declared kind, the probe's own legacy socket labelled apart
    assert report["connections"] == {"legacy_thread": 0, "legacy_agent": 0, "unified": 1, "wsmigrate_probe": 0,
                                     "wsmigrate_probe_unified": 0}
    assert (report["revision"], report["kill_switch"]) == (0, False)
    created = report["types"]["agent_created"]
    assert created["stage"] == created["configured_stage"] == "off"
    assert (created["published"], created["delivered"]) == (1, {"legacy": 0, "unified": 1})
    assert (created["safe"], created["consistency"]) == (True, None)


async def test_a_stage_change_from_the_cli_shows_within_two_seconds(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    await open_console(page, server)
    await expect(row(page, "message_created")).to_have_attribute("data-stage", "off")
    assert "admin_token" not in page.url  # taken off the address bar once read
    # kept for this tab's session only, never on disk (localStorage) for the next user of the machine
    stored = await page.evaluate("() => [Object.values(localStorage), Object.values(sessionStorage)]")
    assert ADMIN_TOKEN not in stored[0]
    assert ADMIN_TOKEN in stored[1]

    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsmigrate", "flags", "set", "message_created", "shadow",
        "--url", server.http, "--token", ADMIN_TOKEN,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    returned = time.monotonic()
    await expect(row(page, "message_created")).to_have_attribute("data-stage", "shadow", timeout=2000)
    assert time.monotonic() - returned < 2.0
    revision = (await flags(server))["revision"]
    await expect(page.locator("#revision")).to_have_text(str(revision))


async def test_promote_rollback_and_kill_switch_buttons(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    await set_stage(server, "stream_chunk", "live")
    await open_console(page, server)
    message = row(page, "message_created")
    action = page.locator("#action-msg")

    # promote: off -> shadow (the verdict allows it: one click)
    await expect(message).to_have_attribute("data-stage", "off")
    await message.locator("button.promote").click()
    await expect(action).to_have_attribute("data-kind", "ok")
    assert (await flags(server))["types"]["message_created"]["stage"] == "shadow"
    await expect(message).to_have_attribute("data-stage", "shadow")

    # rollback: shadow -> off
    await message.locator("button.rollback").click()
    await expect(message).to_have_attribute("data-stage", "off")
    assert (await flags(server))["types"]["message_created"]["stage"] == "off"

    # kill switch, then release
    await expect(row(page, "stream_chunk")).to_have_attribute("data-stage", "live")
    await page.locator("#kill-button").click()
    await expect(page.locator("#kill-state")).to_have_attribute("data-state", "engaged")
    assert (await flags(server))["kill_switch"] is True
    await expect(row(page, "stream_chunk")).to_have_attribute("data-stage", "off")
    await expect(row(page, "stream_chunk")).to_have_attribute("data-source", "kill_switch")
    for event_type in ("message_created", "stream_chunk"):  # no promotion while the switch is engaged
        await expect(row(page, event_type).locator("button.promote")).to_be_disabled()
        await expect(row(page, event_type).locator("button.promote")).to_have_attribute(
            "title", "Release the kill switch before promoting")
    await page.locator("#kill-button").click()
    await expect(page.locator("#kill-state")).to_have_attribute("data-state", "released")
    assert (await flags(server))["kill_switch"] is False
    await expect(row(page, "stream_chunk")).to_have_attribute("data-stage", "live")
    await expect(message.locator("button.promote")).to_be_enabled()

    # a refused promotion: the table is paused on "shadow" while another operator rolls back to
    # "off"; promoting from what the page shows asks off -> live, which the API refuses (409)
    await message.locator("button.promote").click()
    await expect(message).to_have_attribute("data-stage", "shadow")
    await page.locator("#pause").click()
    await expect(page.locator("#status")).to_have_attribute("data-state", "paused")
    await set_stage(server, "message_created", "off")
    promote = message.locator("button.promote")
    await promote.click()  # shadow with nothing compared is not safe: the first click only arms
    await expect(promote).to_have_attribute("data-armed", "true")
    await expect(action).to_have_attribute("data-kind", "warn")
    await promote.click()
    await expect(action).to_have_attribute("data-kind", "error")
    await expect(action).to_contain_text("refused (HTTP 409): moving off -> live skips shadow")
    assert (await flags(server))["types"]["message_created"]["stage"] == "off"
    await expect(message).to_have_attribute("data-stage", "off")  # the action refreshed the table


async def test_a_missing_or_wrong_token_shows_an_error(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    error = page.locator("#poll-error")
    placeholder = page.locator("#ops-rows tr.placeholder")

    await page.goto(f"{server.http}/ops")
    await expect(error).to_contain_text("An admin token is required")
    await expect(placeholder).to_contain_text("No data")

    await page.locator("#admin-token").fill("not-the-admin-token")
    await page.locator("#use-token").click()
    await expect(error).to_contain_text("HTTP 401")
    await expect(error).to_contain_text("bad or missing admin token")
    await expect(placeholder).to_be_visible()
    await expect(page.locator("#status")).to_have_attribute("data-state", "error")

    # the right token: the table fills, the error goes, and the token is remembered
    await page.locator("#admin-token").fill(ADMIN_TOKEN)
    await page.locator("#use-token").click()
    await expect(page.locator("#ops-rows tr[data-type]")).to_have_count(13)
    await expect(error).to_be_hidden()
    await page.reload()
    await expect(page.locator("#ops-table")).to_have_attribute("data-state", "ready")


async def test_screenshot_of_the_console_with_traffic(server_factory: ServerFactory, page: Page) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN, compare_window_s=0.5)  # comparisons decided quickly
    await asyncio.gather(*(set_stage(server, event_type, stage) for event_type, stage in [
        ("agent_created", "complete"), ("agent_status_changed", "live"), ("message_created", "shadow"),
        ("stream_chunk", "shadow"), ("stream_start", "shadow"), ("stream_end", "shadow")]))
    await open_console(page, server)
    # traffic for as long as it takes (stopped once the screenshot is written): rates stay non-zero
    traffic = asyncio.create_task(simulate(server.http, Scenario(), legacy=6, unified=3, duration=60))
    try:
        # numbers on screen: comparisons decided, rates measured between two reports
        await expect(row(page, "message_created").locator(".consistency")).to_have_text(re.compile(r"%$"))
        await expect(row(page, "message_created").locator(".rate-legacy")).to_have_text(re.compile(r"[1-9]"))
        await expect(page.locator("#connections [data-kind=unified] b")).not_to_have_text("0")
        assert not traffic.done(), "the traffic stopped early"
        await page.screenshot(path=SCREENSHOTS / "ops.png", full_page=True)
    finally:
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await traffic
    assert (SCREENSHOTS / "ops.png").stat().st_size > 10_000


async def test_an_idle_console_says_what_to_do_and_labels_the_probes_apart(
    server_factory: ServerFactory, page: Page,
) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN, probes=True, probe_interval_s=0.2)
    await open_console(page, server)
    hint = page.locator("#idle-hint")
    await expect(hint).to_be_visible()
    await expect(hint).to_contain_text("wsmigrate simulate --scenario")
    # the probes' two sockets (one per protocol) are wsmigrate's own: counted apart from the users'
    await expect(page.locator("#connections [data-kind=probes] b")).to_have_text("2")
    await expect(page.locator("#connections [data-kind=unified] b")).to_have_text("0")
    await expect(page.locator("#connections [data-kind=probes]")).to_have_attribute(
        "title", re.compile("synthetic probe sockets"))
    await rest(server, "POST", "/api/agents", {"name": "Ada"})
    await expect(hint).to_be_hidden()  # an event was published: the numbers speak
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        health = (await http.get("/healthz")).json()
    assert health["connections"] == {"unified": 0, "legacy": 0, "probes": 2}


async def test_flags_from_an_openfeature_provider_make_the_console_read_only(
    server_factory: ServerFactory, page: Page,
) -> None:
    import uuid

    from openfeature import api

    from tests.unit.test_flags_openfeature import Provider, flag

    domain = f"wsmigrate-test-{uuid.uuid4().hex[:8]}"
    api.set_provider(Provider({"wsmigrate.stage.message_created": flag("shadow")}), domain=domain)
    server = server_factory(admin_token=ADMIN_TOKEN, flags="openfeature", openfeature_domain=domain)
    await open_console(page, server)
    source = page.locator("#flags-source")
    await expect(source).to_be_visible()
    await expect(source).to_contain_text("the OpenFeature provider “In-Memory Provider”")
    await expect(source).to_contain_text("wsmigrate.stage.{event_type}")
    await expect(row(page, "message_created")).to_have_attribute("data-stage", "shadow")
    for event_type in ("message_created", "agent_created"):
        await expect(row(page, event_type).locator("button.promote")).to_be_disabled()
        await expect(row(page, event_type).locator("button.rollback")).to_be_disabled()
    await expect(page.locator("#kill-button")).to_be_disabled()
