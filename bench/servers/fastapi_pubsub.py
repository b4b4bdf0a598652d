"""Peer: fastapi-websocket-pubsub (JSON-RPC over WebSocket; the server calls `notify` on clients).

Clients speak the fastapi-websocket-rpc protocol at /pubsub: `subscribe` / `unsubscribe` requests,
and they answer each `notify` call (the server awaits that answer per recipient). The publisher is
a plain WebSocket at /publish (frames {"topic": ..., "data": {...}}); each frame starts
`endpoint.publish([topic], data)` as a task, like the library's own `publish(sync=False)`, so
publishing is not serialised behind the per-recipient round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi_websocket_pubsub import PubSubEndpoint

app = FastAPI()
endpoint = PubSubEndpoint()
endpoint.register_route(app, "/pubsub")
_pending: set[asyncio.Task[None]] = set()


@app.websocket("/publish")
async def publisher(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = json.loads(await ws.receive_text())
            for event in message.get("turns", [message]):  # {"turns": [...]}: one event per loop turn
                task = asyncio.create_task(endpoint.publish([event["topic"]], {"topic": event["topic"],
                                                                               "data": event["data"]}))
                _pending.add(task)
                task.add_done_callback(_pending.discard)
                if "turns" in message:
                    await asyncio.sleep(0)
    except WebSocketDisconnect:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8104)
    args = parser.parse_args()
    logging.getLogger("fastapi_ws_rpc").setLevel(logging.WARNING)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws_max_size=1024 * 1024)
