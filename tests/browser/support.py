"""Helpers of the browser tests: socket accounting through the browser's own network events, and
what "usable at this width" means for a page (no sideways scroll, every control in reach)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from playwright.async_api import Locator, Page, WebSocket, expect
from websockets.exceptions import ConnectionClosed

from tests.support import Client, RunningServer


@dataclass
class SocketLog:
    """Every WebSocket the page creates (`page.on("websocket")`) with the frames of each."""

    sockets: list[WebSocket] = field(default_factory=list)
    received: list[list[dict[str, Any]]] = field(default_factory=list)
    sent: list[list[dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def attach(cls, page: Page) -> SocketLog:
        log = cls()
        page.on("websocket", log._opened)
        return log

    def _opened(self, ws: WebSocket) -> None:
        received: list[dict[str, Any]] = []
        sent: list[dict[str, Any]] = []
        self.sockets.append(ws)
        self.received.append(received)
        self.sent.append(sent)
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)))
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

    @property
    def urls(self) -> list[str]:
        return [ws.url for ws in self.sockets]


async def legacy_thread_socket_served(server: RunningServer, thread_id: int) -> bool:
    """True if `/api/ws?thread_id=` speaks the legacy protocol (its first frame is `thread_history`)."""
    client = await Client.open(server.ws_url(f"/api/ws?thread_id={thread_id}"))
    try:
        await client.send({"type": "ping", "timestamp": 1})
        first = await client.recv(timeout=5)
    except (TimeoutError, OSError, ConnectionClosed):
        return False
    finally:
        await client.close()
    return first.get("type") == "thread_history"


class Rest:
    """The server's REST API over one kept-alive HTTP client (tests make many calls)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def __call__(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.client.request(method, path, json=body)
        response.raise_for_status()
        return response.json()


@asynccontextmanager
async def rest_client(server: RunningServer) -> AsyncIterator[Rest]:
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        yield Rest(client)


def kill_unified_connections(server: RunningServer) -> int:
    """Close every unified connection from the server side, as a restarting node does (1012)."""

    def kill() -> int:
        connections = [c for c in server.runtime.manager.connections() if c.kind == "unified"]
        for connection in connections:
            connection.outbox.shutdown(1012, "restart")
        return len(connections)

    return int(server.call(kill))


def push_to_unified_clients(server: RunningServer, frame: dict[str, Any]) -> None:
    """Queue a raw frame to every unified connection (say, the server heartbeat's ping)."""
    text = json.dumps(frame)

    def push() -> None:
        for connection in server.runtime.manager.connections():
            if connection.kind == "unified":
                connection.outbox.put(text)

    server.call(push)


# -- layout ---------------------------------------------------------------------------------------


async def assert_no_horizontal_scroll(page: Page) -> None:
    """The page is no wider than the window: nothing needs a sideways scroll to be seen."""
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{page.url}: the page is {widths[0]} px wide in a {widths[1]} px window"


async def assert_reachable(*locators: Locator) -> int:
    """Each element of each locator is visible and, once scrolled to (vertically, or inside a
    scrolling card), lies wholly inside the window's width; an enabled one also takes a click there
    (Playwright's actionability checks, nothing clicked). Returns how many elements were checked."""
    checked = 0
    for locator in locators:
        elements = await locator.all()
        assert elements, f"nothing matches {locator}"
        for element in elements:
            await expect(element).to_be_visible()
            await element.scroll_into_view_if_needed()
            box = await element.bounding_box()
            width = await element.evaluate("() => window.innerWidth")
            assert box is not None
            span = f"{element} spans x={box['x']:.0f}..{box['x'] + box['width']:.0f} in a {width} px window"
            assert box["x"] >= 0, span
            assert box["x"] + box["width"] <= width + 0.5, span
            if await element.is_enabled():
                await element.click(trial=True)
            checked += 1
    return checked


def close_connections(server: RunningServer, kind: str, code: int = 1012, reason: str = "restart") -> int:
    """Close every connection of `kind` ("unified", "legacy_thread", ...) from the server side."""

    def kill() -> int:
        connections = [c for c in server.runtime.manager.connections() if c.kind == kind]
        for connection in connections:
            connection.outbox.shutdown(code, reason)
        return len(connections)

    return int(server.call(kill))
