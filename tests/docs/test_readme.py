"""README.md, executed: the adoption snippet declares an app that really serves both protocols."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from tests.docs.markdown import ROOT, code_blocks
from tests.support import Client, RunningServer

README = ROOT / "README.md"


async def test_the_readme_adoption_snippet_serves_both_protocols() -> None:
    (block,) = [b for b in code_blocks(README) if b.language == "python"]
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(block.code, f"{README}:{block.line}", "exec"), namespace)
    server = RunningServer(namespace["app"]).start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/api/ws?order_id=5") as old:
            new = await Client.open(server.ws_url())
            await new.subscribe("order:5")
            frame = {"type": "order_shipped", "order_id": 5, "carrier": "post"}
            server.run(namespace["broadcast_to_order"](5, frame))
            assert json.loads(await asyncio.wait_for(old.recv(), 10)) == frame
            event = await new.expect("order_shipped")
            assert event["data"] == {"order_id": 5, "carrier": "post"}
            await new.close()
    finally:
        server.stop()
