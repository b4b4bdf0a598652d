"""A little real traffic, so that counters, rates and the latency histogram have something in them."""

from __future__ import annotations

import asyncio

from tests.support import Client, RunningServer, rest

AGENTS = 3


async def _agent_traffic(server: RunningServer) -> None:
    client = await Client.open(server.ws_url())
    try:
        await client.subscribe("agents")
        for i in range(AGENTS):
            await rest(server, "POST", "/api/agents", {"name": f"ops-{i}"})
        for _ in range(AGENTS):
            await client.expect("agent_created")
    finally:
        await client.close()


def agent_traffic(server: RunningServer) -> None:
    """Create AGENTS agents over REST with one unified client subscribed to `agents`, and wait
    until the client has received every `agent_created` frame."""
    asyncio.run(_agent_traffic(server))
