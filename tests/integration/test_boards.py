"""The boards example's own rules on real sockets: UUID ids at every door, its members' auth."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conformance.apps import EXAMPLES, start
from tests.support import Client, RunningServer


@pytest.fixture
def boards(tmp_path: Path) -> Iterator[RunningServer]:
    server = start(EXAMPLES["boards"], tmp_path, 0, auth=True)
    yield server
    server.stop()


def tokens(server: RunningServer) -> tuple[str, str]:
    members = server.app.state.boards.members
    return members.ensure("ann")[1], members.ensure("bob")[1]


async def post(server: RunningServer, path: str, body: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.http, headers=headers) as http:
        return await http.post(path, json=body)


async def legacy_refusal(server: RunningServer, path: str, token: str) -> tuple[dict[str, Any], int]:
    async with connect(f"ws://127.0.0.1:{server.port}{path}?token={token}") as ws:
        frame = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code is not None
        return frame, ws.close_code


async def test_a_members_board_is_hers_alone_on_every_door(boards: RunningServer) -> None:
    ann, bob = tokens(boards)
    created = await post(boards, "/api/boards", {"name": "ann's"}, ann)
    assert created.status_code == 201
    board = created.json()
    assert uuid.UUID(board["id"])
    # REST: someone else's board does not exist for bob
    assert (await post(boards, f"/api/boards/{board['id']}/tasks", {"title": "x"}, bob)).status_code == 404
    # legacy socket: an error frame, then 4403
    frame, code = await legacy_refusal(boards, f"/ws/board/{board['id']}", bob)
    assert (frame, code) == ({"type": "error", "error": f"Board {board['id']}: forbidden"}, 4403)
    # unified: a forbidden error for that topic in the one batched answer
    client = await Client.open(boards.ws_url(f"/api/ws?token={bob}"))
    await client.send({"type": "subscribe", "topics": [f"board:{board['id']}", "boards"]})
    error = await client.expect("error")
    assert (error["code"], error["topic"]) == ("forbidden", f"board:{board['id']}")
    ack = await client.expect("subscribed")
    assert ack["topics"] == ["boards"]
    await client.close()
    # ann herself gets everything
    frame_ok = json.loads(await _first_frame(boards, f"/ws/board/{board['id']}", ann))
    assert frame_ok["type"] == "board_snapshot"


async def _first_frame(server: RunningServer, path: str, token: str) -> str:
    async with connect(f"ws://127.0.0.1:{server.port}{path}?token={token}") as ws:
        return str(await ws.recv())


@pytest.mark.parametrize("raw", ["not-a-uuid", "6F1C2A9E-3B4D-4E5F-8A7B-9C0D1E2F3A4B0", "1" * 300, "%00"])
async def test_a_malformed_board_id_is_not_found_never_a_crash(boards: RunningServer, raw: str) -> None:
    ann, _ = tokens(boards)
    frame, code = await legacy_refusal(boards, f"/ws/board/{raw}", ann)
    assert frame == {"type": "error", "error": "Board ? not found"}
    assert code == 1008


async def test_an_unknown_board_is_not_found(boards: RunningServer) -> None:
    ann, _ = tokens(boards)
    missing = str(uuid.uuid4())
    frame, code = await legacy_refusal(boards, f"/ws/board/{missing}", ann)
    assert (frame, code) == ({"type": "error", "error": f"Board {missing} not found"}, 1008)


async def test_without_a_member_token_every_door_is_closed(boards: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=boards.http) as http:
        assert (await http.post("/api/boards", json={"name": "x"})).status_code == 401
    for path in (f"/ws/board/{uuid.uuid4()}", "/api/ws"):
        async with connect(f"ws://127.0.0.1:{boards.port}{path}") as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4401  # refused, with a code a browser can read


async def test_board_created_reaches_its_owner_only_on_the_shared_boards_topic(boards: RunningServer) -> None:
    ann, bob = tokens(boards)
    watchers = [await Client.open(boards.ws_url(f"/api/ws?token={t}")) for t in (ann, bob)]
    for watcher in watchers:
        await watcher.subscribe("boards")
    board = (await post(boards, "/api/boards", {"name": "private"}, ann)).json()
    created = await watchers[0].expect("board_created")
    assert created["data"]["id"] == board["id"]
    await watchers[1].send({"type": "ping"})
    await watchers[1].expect("pong")
    assert [f for f in watchers[1].frames if f.get("type") == "board_created"] == []
    for watcher in watchers:
        await watcher.close()


async def test_legacy_only_frames_are_counted_and_reported_as_what_blocks_retirement(tmp_path: Path) -> None:
    server = start(EXAMPLES["boards"], tmp_path, 1)
    try:
        board = (await post(server, "/api/boards", {"name": "b"}, None)).json()
        async with connect(f"ws://127.0.0.1:{server.port}/ws/board/{board['id']}") as mover, \
                connect(f"ws://127.0.0.1:{server.port}/ws/board/{board['id']}") as watcher:
            await mover.recv()
            await watcher.recv()
            await mover.send(json.dumps({"type": "move_cursor", "x": 0.1, "y": 0.2}))
            assert json.loads(await watcher.recv())["type"] == "cursor"
        registry = server.runtime.registry
        assert registry.get_sample_value("wsmigrate_legacy_only_broadcasts_total", {"frame_type": "cursor"}) == 1
        command = [sys.executable, "-m", "wsmigrate", "report", "--url", server.http]
        result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "still block retiring the legacy path: cursor (1 broadcasts)" in result.stdout
    finally:
        server.stop()
