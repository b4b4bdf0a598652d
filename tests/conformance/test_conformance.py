"""One conformance suite, run on both example apps (tests/conformance/apps.py).

Each test opens real legacy and unified sockets on a real server of the example and raises events
the way the app does (its old manager, or `@publish_event`). "Exactly once and in order" is read
the same way everywhere: after the events under test one more event of the same case is raised as
a sentinel, and each socket's frames before the sentinel must be exactly the expected keys.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conformance.apps import EXAMPLES, ORIGINS, Case, ExampleApp, Key, start
from tests.redis_server import bus_url
from tests.support import ADMIN_TOKEN, Client, RunningServer, set_stage

STAGES = ("off", "shadow", "live", "complete")
TIMEOUT_S = 10.0


@pytest.fixture(params=sorted(EXAMPLES))
def example(request: pytest.FixtureRequest) -> ExampleApp:
    return EXAMPLES[request.param]


@pytest.fixture
def servers(example: ExampleApp, tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(**overrides: Any) -> RunningServer:
        overrides.setdefault("admin_token", ADMIN_TOKEN)
        server = start(example, tmp_path, len(started), **overrides)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


async def open_legacy(server: RunningServer, case: Case) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{server.port}{case.legacy_path}", open_timeout=TIMEOUT_S, max_queue=None)
    for _ in range(case.opening):
        await asyncio.wait_for(ws.recv(), TIMEOUT_S)
    return ws


async def open_unified(server: RunningServer, case: Case) -> Client:
    client = await Client.open(server.ws_url())
    await client.subscribe(case.topic)
    return client


async def legacy_keys_until(ws: ClientConnection, case: Case, sentinel: Key) -> list[Key]:
    keys: list[Key] = []
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            key = case.legacy_key(json.loads(await ws.recv()))
            if key == sentinel:
                return keys
            if key is not None:
                keys.append(key)


async def unified_keys_until(client: Client, case: Case, sentinel: Key) -> list[Key]:
    keys: list[Key] = []
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            key = case.unified_key(await client.recv())
            if key == sentinel:
                return keys
            if key is not None:
                keys.append(key)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("origin", ORIGINS)
async def test_every_stage_origin_and_client_kind_gets_each_event_exactly_once_in_order(
    servers: Callable[..., RunningServer], example: ExampleApp, stage: str, origin: str,
) -> None:
    server = servers()
    case = (await example.scene(server, events=3))[origin]
    await set_stage(server, case.event_type, stage)
    legacy, unified = await open_legacy(server, case), await open_unified(server, case)
    expected = [await case.trigger(n) for n in range(3)]
    sentinel = await case.trigger(3)
    assert await legacy_keys_until(legacy, case, sentinel) == expected
    assert await unified_keys_until(unified, case, sentinel) == expected
    await legacy.close()
    await unified.close()


@pytest.mark.parametrize("origin", ORIGINS)
async def test_flag_flips_under_load_lose_duplicate_and_reorder_nothing(
    servers: Callable[..., RunningServer], example: ExampleApp, origin: str,
) -> None:
    server = servers()
    events = 40
    case = (await example.scene(server, events=events))[origin]
    legacies = [await open_legacy(server, case) for _ in range(5)]
    unifieds = [await open_unified(server, case) for _ in range(5)]
    expected = []
    for n in range(events):
        if n % 4 == 0:  # the stage moves on while events flow, back to the start after complete
            await set_stage(server, case.event_type, STAGES[(n // 4) % len(STAGES)])
        expected.append(await case.trigger(n))
    sentinel = await case.trigger(events)
    for ws in legacies:
        assert await legacy_keys_until(ws, case, sentinel) == expected
        await ws.close()
    for client in unifieds:
        assert await unified_keys_until(client, case, sentinel) == expected
        await client.close()


async def test_a_unified_client_that_reconnects_with_since_gets_exactly_what_it_missed(
    servers: Callable[..., RunningServer], example: ExampleApp,
) -> None:
    server = servers()
    case = (await example.scene(server, events=6))["bus"]
    client = await open_unified(server, case)
    first = await case.trigger(0)
    position: dict[str, Any] = {}
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            frame = await client.recv()
            if case.unified_key(frame) == first:
                position = {"epoch": frame["epoch"], "seq": frame["seq"]}
                break
    await client.close()
    missed = [await case.trigger(n) for n in range(1, 5)]
    again = await Client.open(server.ws_url())
    ack = await again.subscribe(case.topic, since={case.topic: position})
    assert ack["positions"][case.topic]["recovered"] is True
    sentinel = await case.trigger(5)
    assert await unified_keys_until(again, case, sentinel) == missed
    await again.close()


async def test_the_parity_report_and_promote_follow_what_clients_received(
    servers: Callable[..., RunningServer], example: ExampleApp,
) -> None:
    server = servers(compare_window_s=0.2)
    case = (await example.scene(server, events=6))["legacy_call"]
    await set_stage(server, case.event_type, "shadow")
    legacy = await open_legacy(server, case)
    expected = [await case.trigger(n) for n in range(5)]
    sentinel = await case.trigger(5)
    assert await legacy_keys_until(legacy, case, sentinel) == expected
    server.call(server.runtime.comparator.flush)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wsmigrate", *args, "--url", server.http],
                              capture_output=True, text=True, timeout=60,
                              env={"WSMIGRATE_ADMIN_TOKEN": ADMIN_TOKEN, "PATH": ""})

    report = json.loads((await asyncio.to_thread(cli, "report", "--json")).stdout)
    assert set(report) == set(server.runtime.catalog.names)  # the app's own types, from the server
    row = report[case.event_type]
    assert (row["stage"], row["missing"], row["mismatches"]) == ("shadow", 0, 0)
    assert row["matches"] == len(expected) + 1  # one legacy recipient, each event compared
    refused = await asyncio.to_thread(cli, "promote", case.event_type)
    assert refused.returncode == 1
    assert "only 6 compared" in refused.stderr
    promoted = await asyncio.to_thread(cli, "promote", case.event_type, "--min-compared", "6")
    assert promoted.returncode == 0, promoted.stderr
    assert f"{case.event_type}: shadow -> live" in promoted.stdout
    await legacy.close()


async def test_two_servers_on_one_redis_bus_deliver_to_each_others_clients(
    servers: Callable[..., RunningServer], example: ExampleApp, redis_url: str, redis_prefix: str, tmp_path: Path,
) -> None:
    shared = {"bus_url": bus_url(redis_url, redis_prefix), "database_url": f"sqlite:///{tmp_path}/shared.db"}
    first = servers(**shared)
    second = servers(**shared)
    case = (await example.scene(second, events=4))["bus"]
    await set_stage(first, case.event_type, "live")  # the flags are shared through Redis too
    legacy, unified = await open_legacy(first, case), await open_unified(first, case)
    expected = [await case.trigger(n) for n in range(3)]  # raised on the second server
    sentinel = await case.trigger(3)
    assert await legacy_keys_until(legacy, case, sentinel) == expected
    assert await unified_keys_until(unified, case, sentinel) == expected
    await legacy.close()
    await unified.close()

