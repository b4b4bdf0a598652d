"""The chaos suite's cluster and its counting clients.

A `Cluster` is two `wsmigrate serve` processes of the chat app on one private `redis-server` and
one SQLite database, as a small production deployment runs. Clients behave like the real ones:

* `UnifiedFollower`: one socket, several thread topics, loaded from each thread's REST view and
  subscribed `since` its positions; on any close it reconnects to a live worker and resubscribes
  `since` the last event it saw (with its `event_id`, as the browser client does). Where the ack
  says `recovered: false` it reloads the view, as `onResync` does.
* `LegacyFollower`: the old frontend's socket per view (`/api/ws?thread_id=N`); on any close it
  reopens the view and takes the `thread_history` it is sent first.
* `Publisher`: posts messages over both workers at a steady rate; every answer must be 201.

Every client counts, per thread, which messages it holds and how: from events, from snapshots
after a reported loss, and every event it received twice. The database (read at the end) is the
truth of what was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.process.server_process import ServerProcess
from tests.redis_server import RedisServer

RECONNECT_PAUSE_S = 0.1  # between attempts to reach a worker (a client's backoff, not a sync)
FRAME_TIMEOUT_S = 30.0
ADMIN_TOKEN = "chaos-admin-token"


class Worker:
    """One `wsmigrate serve` process; its log is read continuously so the pipe never fills."""

    def __init__(self, tmp_path: Path, env: dict[str, str], name: str) -> None:
        self.name = name
        self.process = ServerProcess(tmp_path, env=env)
        self.alive = True
        self._reader = threading.Thread(target=self._drain, name=f"log-{name}", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        stdout = self.process.process.stdout
        assert stdout is not None
        for line in iter(stdout.readline, b""):
            self.process.log.append(line.decode(errors="replace"))

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.process.port}"

    def kill(self) -> None:
        """kill -9 of the worker and everything it spawned."""
        self.alive = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.process.pid, signal.SIGKILL)
        self.process.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM: the graceful drain (1012 to every socket, requests in flight finish)."""
        self.alive = False
        self.process.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.alive = False
        self.process.stop()


class Cluster:
    def __init__(self, tmp_path: Path, redis: RedisServer, *, delivery: str = "stream") -> None:
        self.redis = redis
        env = {"WSMIGRATE_BUS_URL": f"{redis.url}?delivery={delivery}", "WSMIGRATE_HISTORY_SIZE": "5000",
               "WSMIGRATE_ADMIN_TOKEN": ADMIN_TOKEN, "WSMIGRATE_RELAY_SWEEP_INTERVAL_S": "0.2",
               "WSMIGRATE_RELAY_GRACE_S": "1", "WSMIGRATE_HEARTBEAT_INTERVAL_S": "3600",
               "WSMIGRATE_MAX_CONNECTIONS_PER_USER": "1000", "WSMIGRATE_SUBSCRIBE_BURST": "1000",
               "WSMIGRATE_SUBSCRIBE_RATE_PER_S": "1000"}
        self.workers = [Worker(tmp_path, env, "a"), Worker(tmp_path, env, "b")]
        self._turn = itertools.count()
        self.received = asyncio.Event()  # set whenever any client takes a message (see `settle`)

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    def pick(self) -> Worker:
        live = self.live()
        return live[next(self._turn) % len(live)]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


async def until_ok(call: Any, timeout: float = FRAME_TIMEOUT_S) -> Any:
    """Retry a REST call while the cluster is in the middle of a fault (a worker gone, Redis down)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await call()
            except (httpx.HTTPError, OSError):
                await asyncio.sleep(RECONNECT_PAUSE_S)


@dataclass
class Tally:
    """What one client holds of one thread."""

    from_events: set[int] = field(default_factory=set)
    from_snapshots: set[int] = field(default_factory=set)
    duplicates: int = 0

    @property
    def held(self) -> set[int]:
        return self.from_events | self.from_snapshots


class UnifiedFollower:
    def __init__(self, cluster: Cluster, threads: list[int], *, comes_back: asyncio.Event | None = None) -> None:
        """`comes_back`: after its first disconnection the client waits for it before reconnecting
        (a tab in the background, a laptop waking up): its `since` is then older than events
        published meanwhile, the case where numbers alone could look continuous."""
        self.cluster = cluster
        self.threads = threads
        self.comes_back = comes_back
        self.tallies = {thread: Tally() for thread in threads}
        self.positions: dict[str, dict[str, Any]] = {}
        self.event_ids: Counter[str] = Counter()
        self.resyncs = 0
        self.reconnects = 0
        self.unavailable = 0
        self.ws: ClientConnection | None = None
        self.stopping = False
        self.ready = asyncio.Event()

    async def _view(self, thread: int) -> None:
        """Load the view: its messages and the positions to subscribe `since`."""
        async def get() -> Any:
            async with httpx.AsyncClient(base_url=self.cluster.pick().url, timeout=10) as http:
                response = await http.get(f"/api/threads/{thread}/view")
                if response.status_code == 503:  # the bus is down: the view cannot be followed yet
                    raise httpx.HTTPError("503")
                return response.raise_for_status().json()

        view = await until_ok(get)
        self.tallies[thread].from_snapshots |= {m["id"] for m in view["messages"]}
        self.cluster.received.set()
        self.positions[f"thread:{thread}"] = view["positions"][f"thread:{thread}"]

    async def run(self) -> None:
        for thread in self.threads:
            await self._view(thread)
        while not self.stopping:
            with contextlib.suppress(ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                await self._session()
            if not self.stopping:
                self.reconnects += 1
                if self.comes_back is not None:
                    await self.comes_back.wait()
                    self.comes_back = None
                await asyncio.sleep(RECONNECT_PAUSE_S)

    async def _session(self) -> None:
        worker = self.cluster.pick()
        async with connect(f"{worker.ws_base}/api/ws", open_timeout=10, max_queue=None) as ws:
            self.ws = ws
            topics = [f"thread:{t}" for t in self.threads]
            await ws.send(json.dumps({"type": "subscribe", "topics": topics, "since": self.positions,
                                      "message_id": "s"}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT_S))
                if frame["type"] == "error" and frame.get("code") == "unavailable":
                    self.unavailable += 1  # the bus is down: nothing was subscribed, try again
                    return
                if frame["type"] == "subscribed":
                    for topic, position in frame["positions"].items():
                        if position.get("recovered") is False:
                            self.resyncs += 1
                            await self._view(int(topic.split(":")[1]))
                    self.ready.set()
                elif frame["type"] == "message_created":
                    self._take(frame)

    def _take(self, frame: dict[str, Any]) -> None:
        tally = self.tallies[frame["data"]["thread_id"]]
        self.event_ids[frame["event_id"]] += 1
        if self.event_ids[frame["event_id"]] > 1:
            tally.duplicates += 1
        tally.from_events.add(frame["data"]["id"])
        self.cluster.received.set()
        self.positions[frame["topic"]] = {"epoch": frame["epoch"], "seq": frame["seq"],
                                          "event_id": frame["event_id"]}

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            await self.ws.close()


class LegacyFollower:
    def __init__(self, cluster: Cluster, thread: int) -> None:
        self.cluster = cluster
        self.thread = thread
        self.tally = Tally()
        self.reopens = 0
        self.ws: ClientConnection | None = None
        self.stopping = False
        self.ready = asyncio.Event()

    async def run(self) -> None:
        while not self.stopping:
            with contextlib.suppress(ConnectionClosed, OSError, InvalidHandshake, InvalidStatus, TimeoutError):
                await self._socket()
            if not self.stopping:
                self.reopens += 1
                await asyncio.sleep(RECONNECT_PAUSE_S)

    async def _socket(self) -> None:
        worker = self.cluster.pick()
        async with connect(f"{worker.ws_base}/api/ws?thread_id={self.thread}", open_timeout=10,
                           max_queue=None) as ws:
            self.ws = ws
            seen_here: set[int] = set()  # a frame twice on one socket is a duplicate
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT_S))
                if frame["type"] == "thread_history":
                    self.tally.from_snapshots |= {m["id"] for m in frame["messages"]}
                    self.cluster.received.set()
                    self.ready.set()
                elif frame["type"] == "thread_message":
                    message_id = frame["message"]["id"]
                    if message_id in seen_here:
                        self.tally.duplicates += 1
                    seen_here.add(message_id)
                    self.tally.from_events.add(message_id)
                    self.cluster.received.set()

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            await self.ws.close()


class Publisher:
    """Posts messages round-robin over threads and live workers; no answer may be a 5xx."""

    def __init__(self, cluster: Cluster, threads: list[int], per_second: float) -> None:
        self.cluster = cluster
        self.threads = threads
        self.period = 1 / per_second
        self.committed: list[int] = []  # ids of messages answered 201
        self.unanswered = 0  # requests whose worker died under them: committed or not, the database says
        self.errors: list[str] = []
        self.stopping = False
        self._progress = asyncio.Event()

    async def reach(self, count: int, timeout: float) -> None:
        """Until `count` messages have been answered 201."""
        async with asyncio.timeout(timeout):
            while len(self.committed) < count:
                self._progress.clear()
                await self._progress.wait()

    async def run(self) -> None:
        for n in itertools.count():
            if self.stopping:
                return
            thread = self.threads[n % len(self.threads)]
            worker = self.cluster.pick()
            try:
                async with httpx.AsyncClient(base_url=worker.url, timeout=10) as http:
                    response = await http.post(f"/api/threads/{thread}/messages", json={"content": f"m{n}"})
            except (httpx.HTTPError, OSError):
                self.unanswered += 1
            else:
                if response.status_code == 201:
                    self.committed.append(response.json()["id"])
                    self._progress.set()
                elif response.status_code >= 500:
                    self.errors.append(f"{worker.name}: {response.status_code} {response.text[:200]}")
            await asyncio.sleep(self.period)  # the publishing rate, not a synchronisation


async def committed_messages(cluster: Cluster, thread: int) -> set[int]:
    async def get() -> Any:
        async with httpx.AsyncClient(base_url=cluster.pick().url, timeout=10) as http:
            return (await http.get(f"/api/threads/{thread}/messages")).raise_for_status().json()

    return {m["id"] for m in await until_ok(get)}
