"""An asyncio client that behaves like the old frontend: a new socket for every view.

Opening a view closes the previous socket and opens `/api/ws?thread_id=…` or `/api/ws?agent_id=…`.
Every frame received is recorded (in order, and counted per type), so tests and the migration
simulator can compare what legacy clients saw with what unified clients saw.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEFAULT_TIMEOUT = 10.0


class LegacyClient:
    """One browser tab of the old app."""

    def __init__(self, base_ws_url: str, *, token: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.base_ws_url = base_ws_url.rstrip("/")
        self.token = token
        self.headers = headers or {}
        self.ws: ClientConnection | None = None
        self.frames: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.sockets_opened = 0
        self.navigations = 0
        self.view: tuple[str, int] | None = None
        self._ids = itertools.count(1)

    def _url(self, key: str, value: int) -> str:
        params = {key: value}
        if self.token:
            params["token"] = self.token  # type: ignore[assignment]
        return f"{self.base_ws_url}/api/ws?{urlencode(params)}"

    async def _open(self, key: str, value: int) -> None:
        await self.close()
        self.ws = await connect(self._url(key, value), open_timeout=DEFAULT_TIMEOUT, max_size=None,
                                max_queue=None, additional_headers=self.headers)
        self.sockets_opened += 1
        self.navigations += 1
        self.view = (key, value)

    async def open_thread(self, thread_id: int) -> dict[str, Any]:
        """Navigate to a chat view; returns its `thread_history` frame."""
        await self._open("thread_id", thread_id)
        return await self.expect("thread_history")

    async def open_agent(self, agent_id: int) -> None:
        """Navigate to an agent's dashboard view."""
        await self._open("agent_id", agent_id)

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None, "open a view first"
        await self.ws.send(json.dumps(frame))

    async def subscribe_thread(self, thread_id: int) -> dict[str, Any]:
        await self.send({"type": "subscribe_thread", "thread_id": thread_id, "message_id": f"m{next(self._ids)}"})
        return await self.expect("thread_history")

    async def send_message(self, thread_id: int, content: str) -> None:
        await self.send({"type": "send_message", "thread_id": thread_id, "content": content,
                         "message_id": f"m{next(self._ids)}"})

    async def ping(self, timestamp: int) -> dict[str, Any]:
        await self.send({"type": "ping", "timestamp": timestamp})
        return await self.expect("pong")

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        assert self.ws is not None, "open a view first"
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        self.frames.append(frame)
        self.counts[str(frame.get("type"))] += 1
        return frame

    async def expect(self, frame_type: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Receive until a frame of `frame_type` arrives (earlier frames stay recorded)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame.get("type") == frame_type:
                    return frame

    async def drain(self, idle: float) -> int:
        """Record frames until none arrives for `idle` seconds; returns how many were read."""
        read = 0
        try:
            while True:
                await self.recv(idle)
                read += 1
        except (TimeoutError, ConnectionClosed):
            return read

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None
