"""Helpers of the browser tests: socket accounting through the browser's own network events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from playwright.async_api import Page, WebSocket
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
