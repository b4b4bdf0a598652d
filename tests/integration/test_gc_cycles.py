"""A finished socket is freed by reference counting alone: it leaves no reference cycle.

Why it matters: the server freezes whatever survives a full collection (bridge/server/gc_policy.py),
and frozen objects caught in a cycle would never be collected. The test turns the cycle collector
off, opens unified and legacy sockets on a real server, closes them, and waits (bounded) until
every server-side protocol object of them has been freed. With a cycle left, none would be.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

from examples.chat.legacy_client import LegacyClient
from tests.conftest import ServerFactory
from tests.support import Client, rest
from wsmigrate.bridge.server.ws_protocol import DirectWebSocketProtocol

SOCKETS = 20


async def test_closed_unified_and_legacy_sockets_need_no_cycle_collection(server_factory: ServerFactory) -> None:
    server = server_factory()
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada", "system_prompt": "p"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "t"})
    gc.collect()
    gc.disable()
    try:
        unified = [await Client.open(server.ws_url()) for _ in range(SOCKETS)]
        for client in unified:
            await client.subscribe(f"thread:{thread['id']}", "agents")
        legacy = [LegacyClient(f"ws://127.0.0.1:{server.port}") for _ in range(SOCKETS)]
        for view in legacy:
            await view.open_thread(thread["id"])

        protocols = server.call(lambda: [p for p in server.server.server_state.connections
                                         if isinstance(p, DirectWebSocketProtocol)])
        assert len(protocols) == 2 * SOCKETS
        # each socket's uvicorn protocol and the websockets protocol it parses frames with
        watched = [*protocols, *(protocol.conn for protocol in protocols)]
        loop = asyncio.get_running_loop()
        freed = asyncio.Event()
        alive = [len(watched)]

        def one_freed() -> None:  # runs on the server's thread, when the last reference goes
            alive[0] -= 1
            if alive[0] == 0:
                loop.call_soon_threadsafe(freed.set)

        for each in watched:
            weakref.finalize(each, one_freed)
        del each, watched, protocols

        for client in unified:
            await client.close()
        for view in legacy:
            await view.close()
        try:
            await asyncio.wait_for(freed.wait(), 10)
        except TimeoutError:
            raise AssertionError(f"{alive[0]} objects of closed sockets are kept alive by reference cycles") from None
    finally:
        gc.enable()
