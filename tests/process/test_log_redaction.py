"""Tokens never reach the logs: `wsmigrate serve` at its default log level, with the access log on,
receives REST requests and WebSocket handshakes carrying `?token=`; no line of its log holds one."""

from __future__ import annotations

from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.process.server_process import ServerProcess

SECRET = "s3cr3t-t0ken-value"


async def test_tokens_in_query_strings_are_redacted_from_the_access_log(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"WSMIGRATE_AUTH": "off"})
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get(f"/api/agents?token={SECRET}")).status_code == 200
        async with connect(f"{server.ws_url}?token={SECRET}&topics=agents") as ws:
            assert '"subscribed"' in str(await ws.recv())
        async with connect(f"{server.ws_url}?thread_id=1&wsmigrate_token={SECRET}") as legacy:
            await legacy.recv()
        # A last request that is logged after the others: once it is in the log, they are too.
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            await http.get("/healthz?marker=end-of-test")
        server.wait_for("end-of-test", timeout=10)
    finally:
        server.stop()
    log = "".join(server.log)
    assert SECRET not in log
    assert "/api/agents?token=[redacted]" in log
    assert "/api/ws?token=[redacted]&topics=agents" in log
