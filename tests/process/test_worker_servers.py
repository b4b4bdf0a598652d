"""wsmigrate under the servers teams already run: `uvicorn --workers N` and gunicorn's
UvicornWorker, on the Redis bus; and several workers on the in-memory bus refused at start."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from tests.process.server_process import ServerProcess
from tests.redis_server import bus_url
from tests.support import Client
from wsmigrate.bridge.ops.report import parse_samples
from wsmigrate.metrics.batch import FLUSH_INTERVAL_S

BOARDS = "examples.boards.app:app_from_env"
CLIENTS = 10
BOARD_CREATED_ON_THE_BUS = {"event_type": "board_created", "origin": "outbox"}


def uvicorn_command(workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", BOARDS, "--port", "{port}", "--workers", str(workers)]


def gunicorn_command(workers: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-k", "wsmigrate.bridge.server.gunicorn.WsMigrateWorker",
            "-w", str(workers), "-b", "127.0.0.1:{port}", f"{BOARDS}()"]


@pytest.mark.parametrize("command", [uvicorn_command, gunicorn_command], ids=["uvicorn", "gunicorn"])
async def test_two_workers_on_redis_deliver_every_event_to_every_client(
    tmp_path: Path, redis_url: str, redis_prefix: str, command: object,
) -> None:
    env = {"WSMIGRATE_BUS_URL": bus_url(redis_url, redis_prefix),
           "WSMIGRATE_DATABASE_URL": f"sqlite:///{tmp_path}/boards.db",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}  # an empty directory of its own
    (tmp_path / "prometheus").mkdir()
    server = ServerProcess(tmp_path, workers=2, env=env, command=command(2))  # type: ignore[operator]
    try:
        ws = server.url.replace("http://", "ws://")
        clients = [await Client.open(f"{ws}/api/ws") for _ in range(CLIENTS)]  # spread over both workers
        for client in clients:
            await client.subscribe("boards")
        created = []
        for number in range(CLIENTS):  # and so are the requests that publish
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                created.append((await http.post("/api/boards", json={"name": f"b{number}"})).json()["id"])
        for client in clients:
            got = []
            while len(got) < CLIENTS:
                frame = await client.recv()
                if frame["type"] == "board_created":
                    got.append(frame["data"]["id"])
            assert got == created
            await client.close()
        # One scrape counts both workers (multiprocess mode); the other worker's tallies may be up to
        # FLUSH_INTERVAL_S behind (docs/operations.md), so the count is read until it settles.
        published = 0.0
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for _ in range(int(4 * FLUSH_INTERVAL_S / 0.1)):
                samples = parse_samples((await http.get("/metrics")).text)["wsmigrate_events_published_total"]
                published = sum(v for labels, v in samples if labels == BOARD_CREATED_ON_THE_BUS)
                if published >= CLIENTS:
                    break
                await asyncio.sleep(0.1)
        assert published == CLIENTS
    finally:
        server.stop()


@pytest.mark.parametrize("command", [uvicorn_command, gunicorn_command], ids=["uvicorn", "gunicorn"])
async def test_two_workers_on_the_in_memory_bus_are_refused_with_advice(tmp_path: Path, command: object) -> None:
    env = {"WSMIGRATE_BUS_URL": "memory://", "WSMIGRATE_DATABASE_URL": f"sqlite:///{tmp_path}/boards.db"}
    with pytest.raises((RuntimeError, TimeoutError)) as refused:
        ServerProcess(tmp_path, workers=2, env=env, command=command(2))  # type: ignore[operator]
    log = str(refused.value)
    assert "2 workers cannot share the in-memory bus" in log
    assert "WSMIGRATE_BUS_URL=redis://" in log


async def test_one_plain_uvicorn_worker_serves_on_the_asgi_fallback(tmp_path: Path) -> None:
    env = {"WSMIGRATE_DATABASE_URL": f"sqlite:///{tmp_path}/boards.db"}
    server = ServerProcess(tmp_path, env=env, command=[sys.executable, "-m", "uvicorn", "--factory", BOARDS,
                                                       "--port", "{port}"], started="Uvicorn running on")
    try:
        client = await Client.open(server.url.replace("http://", "ws://") + "/api/ws")
        await client.subscribe("boards")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            board = (await http.post("/api/boards", json={"name": "plain"})).json()
        assert (await asyncio.wait_for(client.expect("board_created"), 10))["data"]["id"] == board["id"]
        await client.close()
    finally:
        server.stop()
