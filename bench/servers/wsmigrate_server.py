"""wsmigrate's reference server, as `wsmigrate serve` runs it, plus an in-process publisher socket.

`/bench/publish` reads frames {"type": ..., "topic": ..., "data": {...}} and publishes each one
through the normal ingress exactly as `POST /api/admin/events` does (`Event(...)` then
`bus.publish(event, origin="admin")`), but one event per WebSocket frame, so that injecting an
event costs the same class of work for every server in the benchmark. A frame {"turns": [...]}
publishes each of its events and yields to the event loop after each one: the "one event per loop
turn" workload (a request handler per event, a streamed reply yielding after every token). With a remote bus (Redis)
up to PIPELINE publishes are in flight at once (see `app_factory`). Settings come from the
`WSMIGRATE_*` environment like `wsmigrate serve` (e.g. WSMIGRATE_HISTORY_SIZE=0,
WSMIGRATE_METRICS_ENABLED=false, WSMIGRATE_BUS_URL=redis://...). `GET /bench/gc` reports the cycle
collector's pauses (bridge/server/gc_policy.py) for the reconnect storm; `GET /bench/exit` ends the
process at once (the restart storm).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from examples.chat.app import create_app
from wsmigrate.bridge.server.settings import Settings
from wsmigrate.bridge.server.ws_protocol import UVICORN_WS_OPTIONS
from wsmigrate.metrics.exposition import MULTIPROCESS_ENV, prepare_multiprocess_dir
from wsmigrate.unified import Event, MemoryBackend

PIPELINE = 256
log = logging.getLogger("wsmigrate.bench")


def app_factory() -> FastAPI:
    app = create_app()
    bus = app.state.runtime.bus
    # An in-process bus sequences an event inside `publish`; a remote one (Redis) takes a round trip.
    # There the publisher keeps up to PIPELINE events in flight, as concurrent request handlers
    # would, and the backend pipelines them (order is kept: each publish starts in arrival order).
    remote = not isinstance(bus.backend, MemoryBackend)
    window = asyncio.Semaphore(PIPELINE)
    in_flight: set[asyncio.Task[bool]] = set()

    def finished(task: asyncio.Task[bool]) -> None:
        in_flight.discard(task)
        window.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("publish failed: %r", task.exception())

    async def publisher(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                message = json.loads(await ws.receive_text())
                if "turns" in message:
                    for each in message["turns"]:
                        await bus.publish(Event(type=each.get("type", "stream_chunk"), topic=each["topic"],
                                                data=each["data"]), origin="admin")
                        await asyncio.sleep(0)  # one event per loop turn
                    continue
                event = Event(type=message.get("type", "stream_chunk"), topic=message["topic"],
                              data=message["data"])
                if not remote:
                    await bus.publish(event, origin="admin")
                    continue
                await window.acquire()
                task = asyncio.get_running_loop().create_task(bus.publish(event, origin="admin"))
                in_flight.add(task)
                task.add_done_callback(finished)
        except WebSocketDisconnect:
            pass

    def collector(window: bool = False) -> dict[str, Any]:
        """The collector's pauses so far, and the process's CPU seconds since it started;
        `?window=true` also starts a new longest-pause window."""
        pauses = app.state.runtime.collector.pauses
        summary = {**pauses.summary(), "process_cpu_s": time.process_time()}
        decoded = getattr(app.state.runtime.bus.backend, "decoded", None)  # the Redis bus's replay cache
        if decoded is not None:
            summary["replay_cache"] = {"hits": decoded.hits, "misses": decoded.misses, "evictions": decoded.evictions}
        if window:
            pauses.take_longest()
        return summary

    async def exit_now() -> dict[str, bool]:
        """End the process at once, closing nothing (a crash, a kill -9): the restart storm."""
        asyncio.get_running_loop().call_later(0.05, os._exit, 1)
        return {"exiting": True}

    app.add_api_websocket_route("/bench/publish", publisher)
    app.add_api_route("/bench/exit", exit_now, methods=["GET"])
    app.add_api_route("/bench/gc", collector, methods=["GET"])
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8105)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--stock-uvicorn", action="store_true",
                        help="uvicorn's own WebSocket protocol: outboxes fall back to ASGI send")
    args = parser.parse_args()
    os.environ.update(Settings.from_env().to_env())  # as `wsmigrate serve`: every worker agrees
    if args.workers > 1:  # as `wsmigrate serve`: Prometheus multiprocess mode across workers
        directory = Path(tempfile.mkdtemp(prefix="wsmigrate-bench-prom-"))
        prepare_multiprocess_dir(directory)
        os.environ[MULTIPROCESS_ENV] = str(directory)
    options = {"ws_max_size": UVICORN_WS_OPTIONS["ws_max_size"]} if args.stock_uvicorn else UVICORN_WS_OPTIONS
    uvicorn.run("wsmigrate_server:app_factory", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", timeout_graceful_shutdown=10,
                **options)  # type: ignore[arg-type]
