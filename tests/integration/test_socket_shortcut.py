"""wsmigrate's own sockets skip the router (`bridge.server.mount.BusContext`): only when nothing of
the application sits below, and with exactly what the routed path gives a client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.routing import APIWebSocketRoute
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import connect

from examples.chat.app import ChatSettings, create_app
from tests.support import Client, RunningServer, rest, split_settings
from wsmigrate import Settings
from wsmigrate.bridge.server.mount import BusContext


class SeenSockets:
    """ASGI middleware recording the path of every WebSocket scope that passes through it."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            self.seen.append(scope["path"])
        await self.app(scope, receive, send)


def chat_app(tmp_path: Path, name: str) -> FastAPI:
    ours, chat = split_settings(ChatSettings, {"database_url": f"sqlite:///{tmp_path}/{name}.db", "auth": False,
                                               "stream_delay_ms": 0, "heartbeat_interval_s": 3600})
    return create_app(Settings.from_env({}, **ours), ChatSettings.from_env({}, **chat), registry=CollectorRegistry())


def bus_context(app: FastAPI) -> BusContext:
    layer: Any = app.build_middleware_stack()
    while not isinstance(layer, BusContext):
        layer = layer.app
    return layer


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], RunningServer]]:
    started: list[RunningServer] = []

    def start(app: FastAPI) -> RunningServer:
        started.append(RunningServer(app).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_the_shortcut_takes_only_paths_where_nothing_of_the_application_would_run(tmp_path: Path) -> None:
    plain = chat_app(tmp_path, "plain")
    assert sorted(bus_context(plain).sockets) == ["/api/ws", "/api/ws/v2"]  # the legacy views share /api/ws

    outer = chat_app(tmp_path, "outer")
    outer.add_middleware(SeenSockets, seen=[])  # added after install: above BusContext
    assert sorted(bus_context(outer).sockets) == ["/api/ws", "/api/ws/v2"]

    inner = chat_app(tmp_path, "inner")
    inner.user_middleware.append(Middleware(SeenSockets, seen=[]))  # below BusContext
    assert bus_context(inner).sockets == {}

    guarded = chat_app(tmp_path, "guarded")
    guarded.router.dependencies.append(Depends(lambda: None))  # the app's own dependencies
    assert bus_context(guarded).sockets == {}

    shadowed = chat_app(tmp_path, "shadowed")

    async def own(websocket: WebSocket) -> None:
        await websocket.close()

    shadowed.router.routes.insert(0, APIWebSocketRoute("/api/ws", own))  # the app's, as if registered first
    assert sorted(bus_context(shadowed).sockets) == ["/api/ws/v2"]


async def script(server: RunningServer) -> list[dict[str, Any]]:
    """One client's session, as every frame it received, made comparable across servers."""
    client = await Client.open(server.ws_url())
    frames = [await client.subscribe("agents")]
    agent = await rest(server, "POST", "/api/agents", {"name": "same"})
    frames.append(await client.expect("agent_created"))
    await client.send("not json")
    frames.append(await client.expect("error"))
    await client.send({"type": "subscribe", "topics": ["no-such-topic:1"], "message_id": "bad"})
    frames.append(await client.expect("error"))
    await client.send({"type": "unsubscribe", "topics": ["agents"], "message_id": "u"})
    frames.append(await client.expect("unsubscribed"))
    await client.send({"type": "ping", "message_id": "p"})
    frames.append(await client.expect("pong"))
    await rest(server, "DELETE", f"/api/agents/{agent['id']}")
    await client.close()
    return [normalised(f) for f in frames]


def normalised(frame: dict[str, Any]) -> dict[str, Any]:
    varying = {"ts", "event_id", "server_time", "epoch", "created_at", "updated_at"}
    out: dict[str, Any] = {}
    for key, value in frame.items():
        if key in varying:
            continue
        out[key] = normalised(value) if isinstance(value, dict) else value
    return out


async def test_a_client_gets_the_same_frames_through_the_shortcut_as_through_the_router(
    tmp_path: Path, serve: Callable[[FastAPI], RunningServer],
) -> None:
    above: list[str] = []
    short = chat_app(tmp_path, "short")
    short.add_middleware(SeenSockets, seen=above)
    below: list[str] = []
    routed = chat_app(tmp_path, "routed")
    routed.user_middleware.append(Middleware(SeenSockets, seen=below))
    short_server, routed_server = serve(short), serve(routed)
    assert bus_context(short).sockets
    assert not bus_context(routed).sockets

    assert await script(short_server) == await script(routed_server)
    assert above == ["/api/ws"]  # middleware above BusContext still sees the socket
    assert below == ["/api/ws"]  # and with the shortcut off, so does middleware below it

    # a legacy view at the shared path goes the shortcut too, and gets its history frame
    thread = await rest(short_server, "POST", "/api/threads",
                        {"agent_id": (await rest(short_server, "POST", "/api/agents", {"name": "t"}))["id"]})
    async with connect(f"{short_server.ws_url()}?thread_id={thread['id']}") as legacy:
        assert '"thread_history"' in str(await legacy.recv())
