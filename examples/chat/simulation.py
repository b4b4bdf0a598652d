"""The chat app's scenario for `wsmigrate simulate --scenario examples.chat.simulation:Scenario`.

Three agents with two threads each; legacy clients hop between an agent's dashboard
(`/api/ws?agent_id=…`) and a chat (`/api/ws?thread_id=…`), unified clients between the `agents`
topic and a thread's; traffic is messages (60%), status changes (30%) and streamed runs (10%).
What `setup` created is deleted again by `cleanup`. Against `make run` it signs in as the demo user
(`login`) when no token is given.
"""

from __future__ import annotations

import random

import httpx


class Scenario:
    def __init__(self, agents: int = 3, threads_per_agent: int = 2) -> None:
        self.agent_count = agents
        self.threads_per_agent = threads_per_agent
        self.agents: list[int] = []
        self.threads: list[int] = []

    async def login(self, http: httpx.AsyncClient) -> str | None:
        """The demo user's token from a development server (`make run`), or None."""
        response = await http.get("/api/dev/session")
        return str(response.json()["token"]) if response.status_code == 200 else None

    async def setup(self, http: httpx.AsyncClient) -> None:
        for index in range(self.agent_count):
            agent = (await http.post("/api/agents", json={"name": f"sim-agent-{index}"})).raise_for_status().json()
            self.agents.append(agent["id"])
            for number in range(self.threads_per_agent):
                thread = (await http.post("/api/threads", json={"agent_id": agent["id"], "title": f"sim {number}"})
                          ).raise_for_status().json()
                self.threads.append(thread["id"])

    def legacy_view(self, rng: random.Random) -> str:
        if rng.random() < 0.5:
            return f"/api/ws?agent_id={rng.choice(self.agents)}"
        return f"/api/ws?thread_id={rng.choice(self.threads)}"

    def unified_topic(self, rng: random.Random) -> str:
        return "agents" if rng.random() < 0.5 else f"thread:{rng.choice(self.threads)}"

    async def act(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.6:
            await http.post(f"/api/threads/{rng.choice(self.threads)}/messages", json={"content": "sim"})
        elif roll < 0.9:
            status = rng.choice(["idle", "running"])
            await http.patch(f"/api/agents/{rng.choice(self.agents)}", json={"status": status})
        else:
            await http.post(f"/api/threads/{rng.choice(self.threads)}/run", json={"chunks": 20, "delay_ms": 5})

    async def cleanup(self, http: httpx.AsyncClient) -> None:
        for agent_id in self.agents:  # an agent takes its threads with it
            await http.delete(f"/api/agents/{agent_id}")
        self.agents.clear()
        self.threads.clear()
