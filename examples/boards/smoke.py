"""A smoke check of the boards example on real sockets: `python -m examples.boards.smoke`.

Starts the app in this process (uvicorn on a free loopback port, a temporary SQLite file, auth
off), then walks one board through its life with a legacy socket (`/ws/board/{id}`) and a unified
client side by side, and checks that each receives every change exactly once in its own shape.
Prints `ok boards ...` and exits 0, or fails with the first difference.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
from typing import Any

import httpx
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from examples.boards.app import BoardsSettings, create_app
from wsmigrate import UVICORN_WS_OPTIONS, Settings

TIMEOUT_S = 10.0


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
    return frame


async def walk(base: str) -> str:
    """The check itself, against a running boards server at `base` (host:port)."""
    async with httpx.AsyncClient(base_url=f"http://{base}", timeout=TIMEOUT_S) as http, \
            connect(f"ws://{base}/api/ws?topics=boards") as unified:
        assert (await recv(unified))["type"] == "subscribed"
        board = (await http.post("/api/boards", json={"name": "Launch"})).raise_for_status().json()
        created = await recv(unified)
        assert (created["type"], created["data"]["id"]) == ("board_created", board["id"]), created
        async with connect(f"ws://{base}/ws/board/{board['id']}") as legacy, \
                connect(f"ws://{base}/ws/board/{board['id']}") as watcher:
            snapshot = await recv(legacy)
            assert snapshot == {"type": "board_snapshot", "board_id": board["id"], "name": "Launch", "tasks": []}
            await recv(watcher)
            # The board view: its snapshot over REST, then its topic from the position read before it.
            view = (await http.get(f"/api/boards/{board['id']}")).raise_for_status().json()
            assert (view["name"], view["tasks"]) == ("Launch", [])
            topic = f"board:{board['id']}"
            await unified.send(json.dumps({"type": "subscribe", "topics": [topic],
                                           "since": {topic: view["positions"][topic]}}))
            ack = await recv(unified)
            assert (ack["type"], ack["positions"][topic]["recovered"]) == ("subscribed", True), ack

            task = (await http.post(f"/api/boards/{board['id']}/tasks", json={"title": "Write docs"})).json()
            assert (task["board_id"], task["column"]) == (board["id"], "todo"), task
            assert await recv(legacy) == {"type": "task_added", "board_id": board["id"], "task": task}
            added = await recv(unified)
            assert (added["type"], added["data"], added["topics"]) == (
                "task_created", task, [f"board:{board['id']}", f"task:{task['id']}"]), added

            moved = (await http.patch(f"/api/tasks/{task['id']}", json={"column": "doing"})).json()
            assert await recv(legacy) == {"type": "task_moved", **moved}
            assert (await recv(unified))["data"] == moved

            comment = (await http.post(f"/api/tasks/{task['id']}/comments", json={"body": "on it"})).json()
            assert await recv(legacy) == {"type": "comment_added", "board_id": board["id"], "task_id": task["id"],
                                          "comment": comment}
            commented = await recv(unified)
            assert (commented["type"], commented["topic"]) == ("comment_added", f"board:{board['id']}"), commented

            await legacy.send(json.dumps({"type": "move_cursor", "x": 0.5, "y": 0.25}))
            # a legacy-only frame: delivered the old way, to the board's legacy sockets only
            seen = [(await recv(watcher))["type"] for _ in range(4)]  # the same board, the same frames
            assert seen == ["task_added", "task_moved", "comment_added", "cursor"], seen
            await unified.send(json.dumps({"type": "ping"}))
            assert (await recv(unified))["type"] == "pong"  # and nothing reached the unified client
    return f"ok boards board={board['id']} task={task['id']}"


async def _started(server: uvicorn.Server) -> None:
    for _ in range(int(TIMEOUT_S / 0.01)):  # uvicorn offers no event to wait on
        if server.started:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the server did not start")


async def main() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings.from_env({}, auth=False, self_url=f"http://127.0.0.1:{port}"),
                         BoardsSettings.from_env({}, database_url=f"sqlite:///{tmp}/boards.db"))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **UVICORN_WS_OPTIONS))  # type: ignore[arg-type]
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        await _started(server)
        try:
            return await walk(f"127.0.0.1:{port}")
        finally:
            server.should_exit = True
            await serving


if __name__ == "__main__":
    print(asyncio.run(main()))
    sys.exit(0)
