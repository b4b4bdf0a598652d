"""Peer: python-socketio (ASGI, under uvicorn) with one room per topic.

Socket.IO events: "subscribe" / "unsubscribe" with the topic as argument (acknowledged with "ok");
the server emits "event" with {"topic": ..., "data": {...}} to the topic's room. The publisher is a
plain WebSocket at /publish (frames {"topic": ..., "data": {...}}) that calls `sio.emit(..., room=)`.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")


@sio.event
async def subscribe(sid: str, topic: str) -> str:
    await sio.enter_room(sid, topic)
    return "ok"


@sio.event
async def unsubscribe(sid: str, topic: str) -> str:
    await sio.leave_room(sid, topic)
    return "ok"


async def publisher(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = json.loads(await ws.receive_text())
            for event in message.get("turns", [message]):  # {"turns": [...]}: one event per loop turn
                await sio.emit("event", {"topic": event["topic"], "data": event["data"]}, room=event["topic"])
                if "turns" in message:
                    await asyncio.sleep(0)
    except WebSocketDisconnect:
        pass


app = socketio.ASGIApp(sio, other_asgi_app=Starlette(routes=[WebSocketRoute("/publish", publisher)]))

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8103)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws_max_size=1024 * 1024)
