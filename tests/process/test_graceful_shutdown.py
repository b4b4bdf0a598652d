"""SIGTERM: stop accepting, tell clients to reconnect (1012) in batches, exit in bounded time."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from examples.chat.legacy_client import LegacyClient
from tests.process.server_process import ServerProcess
from tests.support import Client


async def test_sigterm_closes_every_socket_with_1012_in_batches_and_exits(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"WSMIGRATE_SHUTDOWN_BATCH_SIZE": "5",
                                          "WSMIGRATE_SHUTDOWN_BATCH_PAUSE_S": "0.05"})
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            agent = (await http.post("/api/agents", json={"name": "a"})).json()
            thread = (await http.post("/api/threads", json={"agent_id": agent["id"]})).json()
        unified = [await Client.open(server.ws_url) for _ in range(9)]
        for client in unified:
            await client.subscribe("agents")
        legacy = [LegacyClient(f"ws://127.0.0.1:{server.port}") for _ in range(3)]
        for legacy_client in legacy:
            await legacy_client.open_thread(thread["id"])
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for client in unified:
            with pytest.raises(ConnectionClosed):
                await client.recv(15)
            assert client.ws.close_code == 1012
        for legacy_client in legacy:
            with pytest.raises(ConnectionClosed):
                await legacy_client.recv(15)
            assert legacy_client.ws is not None
            assert legacy_client.ws.close_code == 1012
        # uvicorn re-raises the captured SIGTERM once shut down, as a process killed by it would
        assert await asyncio.to_thread(server.process.wait, 15) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15
        await asyncio.to_thread(server.wait_for, "Finished server process", timeout=5)
        batches = [line for line in server.log if "connections with 1012" in line]
        assert len(batches) == 3  # 12 sockets in batches of 5
    finally:
        server.stop()
