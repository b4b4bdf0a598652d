"""Test support: a real uvicorn server on an ephemeral port and a small WebSocket test client."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from examples.chat.app import ChatApp
from examples.chat.declaration import chat_catalog
from tests.ports import bind_free_port
from wsmigrate import EnvSettings
from wsmigrate.bridge.server.runtime import Runtime
from wsmigrate.bridge.server.ws_protocol import UVICORN_WS_OPTIONS, WS_MAX_SIZE

RECV_TIMEOUT = 10.0


class FakeClock:
    """A monotonic clock that only moves when a test moves it (`clock.now += 31`)."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        self.ready.set()

    def install_signal_handlers(self) -> None:  # runs in a thread: leave signals to pytest
        pass


class RunningServer:
    """A uvicorn server in a background thread, bound to 127.0.0.1 on a free port."""

    def __init__(self, app: FastAPI, sock: socket.socket | None = None, *, direct: bool = True,
                 deflate: bool = False) -> None:
        """`direct`: uvicorn as `wsmigrate serve` runs it (outboxes write to the transport); False
        for stock uvicorn, where outboxes fall back to ASGI `send`. `deflate`: offer
        permessage-deflate (`wsmigrate serve` does not)."""
        self.app = app
        self.sock = sock or bind_free_port()
        self.port: int = self.sock.getsockname()[1]
        options: dict[str, Any] = dict(UVICORN_WS_OPTIONS) if direct else {"ws_max_size": WS_MAX_SIZE}
        options["ws_per_message_deflate"] = deflate
        config = uvicorn.Config(app, log_level="warning", lifespan="on", **options)
        self.server = _Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> RunningServer:
        self.thread.start()
        if not self.server.ready.wait(20):
            raise RuntimeError("server did not start within 20 s")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime  # type: ignore[no-any-return]

    @property
    def chat(self) -> ChatApp:
        """The chat example's own components (database, users, service)."""
        return self.app.state.chat  # type: ignore[no-any-return]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str = "/api/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def call(self, func: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run `func` on the server's event loop and return its result (for reading state)."""
        loop = self._loop()

        async def run() -> Any:
            return func()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
        """Run `coroutine` on the server's event loop (publish, broadcast, wait on server state)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop()).result(timeout)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self.server.loop
        assert loop is not None, "server not started"
        return loop


class Client:
    """A unified-protocol test client recording every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Client:
        # An unbounded receive queue keeps the client reading, so closing never waits behind
        # unread frames; tests that play a stalled client pass their own max_queue.
        kwargs.setdefault("max_queue", None)
        kwargs.setdefault("close_timeout", 5)
        ws = await connect(url, open_timeout=10, max_size=None, **kwargs)
        return cls(ws)

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = json.loads(raw)
        self.frames.append(frame)
        return frame  # type: ignore[no-any-return]

    async def expect(self, type_: str, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """Receive frames until one of `type_` arrives (earlier frames stay in `frames`)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame.get("type") == type_:
                    return frame

    async def subscribe(self, *topics: str, message_id: str = "s", **extra: Any) -> dict[str, Any]:
        await self.send({"type": "subscribe", "topics": list(topics), "message_id": message_id, **extra})
        return await self.expect("subscribed")

    async def close(self) -> None:
        await self.ws.close()


ADMIN_TOKEN = "test-admin-token"


async def rest(server: RunningServer, method: str, path: str, json_body: Any = None, *,
               token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        response = await client.request(method, path, json=json_body, headers=headers)
        response.raise_for_status()
        return response.json()


def promote(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """`wsmigrate promote ARGS` against `server` with the admin token, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "wsmigrate", "promote", *args, "--url", server.http,
                           "--token", ADMIN_TOKEN], capture_output=True, text=True, timeout=30)


async def set_stage(server: RunningServer, event_type: str, stage: str, *, force: bool = True) -> Any:
    """Move `event_type` to `stage` through the admin API (the server needs ADMIN_TOKEN)."""
    return await rest(server, "PUT", f"/api/admin/flags/{event_type}", {"stage": stage, "force": force},
                      token=ADMIN_TOKEN)


class StalledClient:
    """A unified client that subscribes and then never reads: the slow consumer of the tests.

    Built on a plain socket whose receive buffer is fixed small before connecting (so the kernel
    cannot autotune it large), speaking the handshake through websockets' sans-I/O protocol.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, server: RunningServer, topics: list[str]) -> StalledClient:
        return await asyncio.to_thread(cls._open_blocking, server, topics)

    @classmethod
    def _open_blocking(cls, server: RunningServer, topics: list[str]) -> StalledClient:
        from websockets.client import ClientProtocol
        from websockets.http11 import Response
        from websockets.uri import parse_uri

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        protocol = ClientProtocol(parse_uri(server.ws_url()))
        protocol.send_request(protocol.connect())
        sock.sendall(b"".join(protocol.data_to_send()))
        acked = False
        while not acked:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed during the handshake")
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Response) and event.status_code != 101:
                    raise ConnectionError(f"handshake refused: {event.status_code}")
                if not isinstance(event, Response) and b"subscribed" in bytes(event.data):
                    acked = True
            if protocol.handshake_exc is None and not acked and protocol.state.name == "OPEN":
                protocol.send_text(json.dumps({"type": "subscribe", "topics": topics}).encode())
                sock.sendall(b"".join(protocol.data_to_send()))
                topics = []  # sent once
        return cls(sock)

    def close(self) -> None:
        self.sock.close()


# The reference chat app's declaration, for tests that need an application's event types.
CHAT = chat_catalog()


def split_settings(own: type[EnvSettings], overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(wsmigrate's, the example's `own` settings) of one mixed set of setting overrides."""
    mine = {k: v for k, v in overrides.items() if k in own.model_fields}
    return {k: v for k, v in overrides.items() if k not in mine}, mine
