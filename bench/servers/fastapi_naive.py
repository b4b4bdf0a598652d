"""Peer: FastAPI/Starlette with the naive send loop of the FastAPI docs' ConnectionManager.

Same "plain" protocol as bare_websockets.py. Each event is encoded once and written to every
member of its room with `await websocket.send_text(...)`, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from rooms import Rooms

app = FastAPI()
ROOMS: Rooms[WebSocket] = Rooms()
DUMPS = json.JSONEncoder(separators=(",", ":")).encode


@app.websocket("/ws")
async def subscriber(ws: WebSocket) -> None:
    await ws.accept()
    mine: set[str] = set()
    try:
        topic = ws.query_params.get("topic")
        if topic:
            ROOMS.join(ws, mine, topic)
            await ws.send_text(DUMPS({"op": "ack", "id": 0}))
        while True:
            message = json.loads(await ws.receive_text())
            if message.get("op") == "sub":
                ROOMS.join(ws, mine, message["topic"])
            elif message.get("op") == "unsub":
                ROOMS.leave(ws, mine, message["topic"])
            await ws.send_text(DUMPS({"op": "ack", "id": message.get("id")}))
    except WebSocketDisconnect:
        pass
    finally:
        for topic in list(mine):
            ROOMS.leave(ws, mine, topic)


async def _send_to_room(message: dict[str, Any]) -> None:
    topic = message["topic"]
    text = DUMPS({"topic": topic, "data": message["data"]})
    for member in list(ROOMS.get(topic) or ()):
        try:  # noqa: SIM105 - the naive loop; a context manager per send would cost more
            await member.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            pass


@app.websocket("/publish")
async def publisher(ws: WebSocket) -> None:
    """One event per frame, or {"turns": [...]}: one event per loop turn (see bare_websockets.py)."""
    await ws.accept()
    try:
        while True:
            message = json.loads(await ws.receive_text())
            if "turns" not in message:
                await _send_to_room(message)
                continue
            for event in message["turns"]:
                await _send_to_room(event)
                await asyncio.sleep(0)
    except WebSocketDisconnect:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws_max_size=1024 * 1024)
