"""Several server processes on one Redis: a worker killed with -9, and Redis restarted empty."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from examples.chat.responder import reply_text
from tests.process.server_process import ServerProcess
from tests.redis_server import RedisServer, bus_url
from tests.support import Client

CHUNKS = 1500


async def open_thread(server: ServerProcess, prompt: str) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        agent = (await http.post("/api/agents", json={"name": "a"})).json()
        thread = (await http.post("/api/threads", json={"agent_id": agent["id"]})).json()
        (await http.post(f"/api/threads/{thread['id']}/messages", json={"content": prompt})).raise_for_status()
        return int(thread["id"])


async def read_until_closed(client: Client, on_frame: Any) -> None:
    """Read (bounded per frame) until the server side goes away; every frame goes to `on_frame`."""
    while True:
        try:
            frame = await client.recv(30)
        except ConnectionClosed:
            return
        on_frame(frame)


async def test_kill_9_a_worker_mid_stream_then_recover_on_another(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    env = {"WSMIGRATE_BUS_URL": bus_url(redis_url, redis_prefix), "WSMIGRATE_HISTORY_SIZE": "5000",
           "WSMIGRATE_STREAM_DELAY_MS": "2"}
    doomed, survivor = ServerProcess(tmp_path, env=env), ServerProcess(tmp_path, env=env)
    try:
        thread_id = await open_thread(survivor, "keep going")
        topic = f"thread:{thread_id}"
        client = await Client.open(doomed.ws_url)
        await client.subscribe(topic)
        async with httpx.AsyncClient(base_url=survivor.url, timeout=10) as http:  # the run streams from B
            (await http.post(f"/api/threads/{thread_id}/run", json={"chunks": CHUNKS})).raise_for_status()
        chunks: list[str] = []
        last: dict[str, Any] = {}
        while len(chunks) < 300:
            last = await client.recv()
            if last["type"] == "stream_chunk":
                chunks.append(last["data"]["content"])
        doomed.process.kill()  # SIGKILL: no goodbye, events in flight to this client are lost with it

        def keep(frame: dict[str, Any]) -> None:
            nonlocal last
            if frame["type"] == "stream_chunk":
                chunks.append(frame["data"]["content"])
                last = frame

        await read_until_closed(client, keep)
        again = await Client.open(survivor.ws_url)
        ack = await again.subscribe(topic, since={topic: {"epoch": last["epoch"], "seq": last["seq"]}})
        assert ack["positions"][topic]["recovered"] is True
        expected_seq = last["seq"] + 1
        while True:
            frame = await again.recv()
            assert frame["seq"] == expected_seq  # no gap, no duplicate across the failover
            expected_seq += 1
            if frame["type"] == "stream_chunk":
                chunks.append(frame["data"]["content"])
            if frame["type"] == "stream_end":
                break
        assert "".join(chunks) == reply_text("keep going", CHUNKS)
        await again.close()
    finally:
        doomed.stop()
        survivor.stop()


async def metric(server: ServerProcess, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        text = (await http.get("/metrics")).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def test_redis_restarted_empty_no_worker_stays_deaf_and_clients_are_told(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    env = {"WSMIGRATE_BUS_URL": private_redis.url, "WSMIGRATE_STREAM_DELAY_MS": "2"}
    first, second = ServerProcess(tmp_path, env=env), ServerProcess(tmp_path, env=env)
    try:
        thread_id = await open_thread(first, "outage")
        topic = f"thread:{thread_id}"
        clients = [await Client.open(s.ws_url) for s in (first, second)]
        positions = [(await c.subscribe(topic))["positions"][topic] for c in clients]
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
            (await http.post(f"/api/threads/{thread_id}/run", json={"chunks": CHUNKS})).raise_for_status()
        for client in clients:  # mid-stream...
            while sum(f.get("type") == "stream_chunk" for f in client.frames) < 100:
                await client.recv()
        private_redis.stop()  # ...Redis goes away and comes back empty
        private_redis.start()
        for index, client in enumerate(clients):  # every worker notices and tells its clients
            def track(frame: dict[str, Any], index: int = index) -> None:
                if "seq" in frame:
                    positions[index] = {"epoch": frame["epoch"], "seq": frame["seq"]}

            await read_until_closed(client, track)
            assert client.ws.close_code == 1012
        for server in (first, second):  # and says so on /metrics
            assert await metric(server, "wsmigrate_bus_discontinuities_total", reason="reset") >= 1
        published_before = sum([await metric(s, "wsmigrate_events_published_total", event_type="message_created")
                                for s in (first, second)])
        again = [await Client.open(s.ws_url) for s in (first, second)]
        for client, position in zip(again, positions, strict=True):
            ack = await client.subscribe(topic, since={topic: position})
            assert ack["positions"][topic]["recovered"] is False  # the history is gone: refetch over REST
        posted = []
        for index in range(10):  # publishers on both workers after the recovery
            server = (first, second)[index % 2]
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                response = await http.post(f"/api/threads/{thread_id}/messages", json={"content": f"after {index}"})
                posted.append(response.raise_for_status().json()["id"])
        for client in again:  # nobody is deaf: every event published after the recovery arrives
            got = []
            while len(got) < 10:
                frame = await client.recv(30)
                if frame["type"] == "message_created":
                    got.append(frame["data"]["id"])
            assert got == posted
            await client.close()
        published_after = sum([await metric(s, "wsmigrate_events_published_total", event_type="message_created")
                               for s in (first, second)])
        assert published_after - published_before >= 10  # (the interrupted run adds its own message)
        for server in (first, second):
            # The liveness gauge is refreshed on the heartbeat timer, so it may still show the outage
            # for one heartbeat after events flow again: it must come back within a bounded time.
            for _ in range(50):
                if await metric(server, "wsmigrate_bus_listener_up") == 1:
                    break
                await asyncio.sleep(0.2)
            assert await metric(server, "wsmigrate_bus_listener_up") == 1
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                assert (await http.get("/healthz")).json()["bus"]["healthy"] is True
    finally:
        first.stop()
        second.stop()
