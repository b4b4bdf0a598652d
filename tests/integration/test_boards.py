"""The boards example's own rules on real sockets: UUID ids at every door, its members' auth."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

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


async def post(server: RunningServer, path: str, body: dict[str, Any], token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http, headers={"Authorization": f"Bearer {token}"}) as http:
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
    with pytest.raises(InvalidStatus):
        await connect(f"ws://127.0.0.1:{boards.port}/ws/board/{uuid.uuid4()}")
    with pytest.raises(InvalidStatus):
        await connect(f"ws://127.0.0.1:{boards.port}/api/ws")


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
