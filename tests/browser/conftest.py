"""A real headless Chromium (Debian's package, driven by Playwright) for the browser tests.

One browser for the session, one fresh context and page per test (`page`, 1280 x 720), or as many
as a test opens with `open_page` (any viewport, say PHONE). Every test and fixture here runs
on the session's event loop (`loop_scope="session"`), which the browser belongs to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, ViewportSize, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 10_000
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


# Console noise that is not a bug of the page: the browser's own network logging (a favicon, a
# connection refused on purpose by a test).
NETWORK_NOISE = ("Failed to load resource", "WebSocket connection to")


def reportable(message: ConsoleMessage) -> bool:
    return message.type == "error" and not message.text.startswith(NETWORK_NOISE)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 720}

PageFactory = Callable[..., Awaitable[Page]]


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(browser: Browser) -> AsyncIterator[PageFactory]:
    """`await open_page(viewport=PHONE, **context_options)`: a page in a fresh context of its own;
    uncaught JavaScript errors and console errors of any of them fail the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    async def open_one(*, viewport: ViewportSize | None = None, **options: Any) -> Page:
        context = await browser.new_context(viewport=viewport or DESKTOP, **options)
        contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if reportable(message) else None)
        return page

    yield open_one
    for context in contexts:
        await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest_asyncio.fixture(loop_scope="session")
async def page(open_page: PageFactory) -> Page:
    """A page in a fresh 1280 x 720 context; uncaught JavaScript errors and console errors fail the test."""
    return await open_page(viewport=DESKTOP)
