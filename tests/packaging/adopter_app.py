"""A tiny application that has its own `metrics`, `legacy`, `bridge` and `unified` modules, and uses
wsmigrate from an installed wheel beside them (run by tests/packaging/test_wheel.py, never imported
by the suite itself). It prints one line, `ok <what it saw>`, or fails."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile

import httpx
import uvicorn
from websockets.asyncio.client import connect

import bridge  # the application's own packages, named like wsmigrate's layers
import legacy
import metrics
import unified
import wsmigrate
from wsmigrate.bridge.app import create_app
from wsmigrate.bridge.cli import UVICORN_WS_OPTIONS
from wsmigrate.bridge.settings import Settings

TIMEOUT_S = 10.0


async def _started(server: uvicorn.Server) -> None:
    """uvicorn sets `started` and offers no event to wait on; poll it, bounded."""
    for _ in range(int(TIMEOUT_S / 0.01)):
        if server.started:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the server did not start")


async def main() -> str:
    assert (metrics.OWNER, legacy.OWNER, bridge.OWNER, unified.OWNER) == ("app",) * 4
    assert "site-packages" in wsmigrate.__file__, wsmigrate.__file__
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({}, database_url=f"sqlite:///{tmp}/app.db", auth=False,
                                     self_url=f"http://127.0.0.1:{port}")
        server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", **UVICORN_WS_OPTIONS))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        await _started(server)
        try:
            async with connect(f"ws://127.0.0.1:{port}/api/ws?topics=agents") as ws:
                ack = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
                assert ack["type"] == "subscribed", ack
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT_S) as http:
                    created = (await http.post("/api/agents", json={"name": "from a wheel"})).json()
                event = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
                assert event["type"] == "agent_created", event
                assert event["data"]["id"] == created["id"], event
        finally:
            server.should_exit = True
            await serving
    return f"ok {wsmigrate.__version__} {event['type']}"


if __name__ == "__main__":
    print(asyncio.run(main()))
    sys.exit(0)
