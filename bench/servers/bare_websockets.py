"""Peer: a bare `websockets` server fanning out with `websockets.broadcast` (the Python ceiling).

Protocol ("plain", shared with fastapi_naive.py), all JSON text frames:
  client -> server  {"op": "sub" | "unsub", "topic": "thread:3", "id": 7}   answered {"op": "ack", "id": 7}
  /ws?topic=thread:3 subscribes at connect time and is answered {"op": "ack", "id": 0}
  server -> client  {"topic": "thread:3", "data": {...}}
  /publish          the publisher socket: frames {"topic": ..., "data": {...}}, one event each, or
                    {"turns": [event, ...]}: each event broadcast, then one yield to the event loop
                    (the "one event per loop turn" workload: a request handler or a streamed
                    reply publishing one event at a time)
"""

from __future__ import annotations

import argparse
import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import uvloop
from rooms import Rooms
from websockets.asyncio.server import ServerConnection, broadcast, serve

ROOMS: Rooms[ServerConnection] = Rooms()
DUMPS = json.JSONEncoder(separators=(",", ":")).encode


def _broadcast(message: dict[str, object]) -> None:
    topic = message["topic"]
    members = ROOMS.get(topic)  # type: ignore[arg-type]
    if members:
        broadcast(members, DUMPS({"topic": topic, "data": message["data"]}))


async def _publisher(ws: ServerConnection) -> None:
    async for text in ws:
        message = json.loads(text)
        if "turns" not in message:
            _broadcast(message)
            continue
        for event in message["turns"]:
            _broadcast(event)
            await asyncio.sleep(0)  # one event per loop turn


async def handler(ws: ServerConnection) -> None:
    assert ws.request is not None
    parts = urlsplit(ws.request.path)
    if parts.path == "/publish":
        await _publisher(ws)
        return
    mine: set[str] = set()
    try:
        for topic in parse_qs(parts.query).get("topic", []):
            ROOMS.join(ws, mine, topic)
            await ws.send(DUMPS({"op": "ack", "id": 0}))
        async for text in ws:
            message = json.loads(text)
            if message.get("op") == "sub":
                ROOMS.join(ws, mine, message["topic"])
            elif message.get("op") == "unsub":
                ROOMS.leave(ws, mine, message["topic"])
            await ws.send(DUMPS({"op": "ack", "id": message.get("id")}))
    finally:
        for topic in list(mine):
            ROOMS.leave(ws, mine, topic)


async def main(host: str, port: int) -> None:
    async with serve(handler, host, port, compression=None, max_size=1024 * 1024) as server:
        print(f"bare websockets server on {host}:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
