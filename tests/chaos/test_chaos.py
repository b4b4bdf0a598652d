"""Chaos: real faults under real traffic, counted per client.

Two workers of the chat app share a private `redis-server` and one database. Unified and legacy
clients follow four threads, spread over both workers; a publisher posts messages over both
workers the whole time. One fault is injected mid-run, traffic goes on, then everything settles.

Each scenario asserts, for every client and every thread:

* every committed message (the database is the truth) is held by every client: nothing is lost
  silently. A client may hold a message from an event or, only after the server said
  `recovered: false` (or, on the legacy protocol, after its socket was closed and its view
  reloaded), from a snapshot;
* no client received any event twice;
* in the scenarios where history survives (Redis with its append-only file, a worker killed or
  stopped), no unified client needed a snapshot at all: every gap was replayed exactly;
* no request answered 5xx: a commit made while the bus was down still succeeded;
* no worker is deaf or on an older flags revision afterwards: a message posted on each live
  worker reaches a fresh client on every live worker, and every worker reports the same
  revision, at least the one set before the fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.chaos.harness import (
    ADMIN_TOKEN,
    Cluster,
    LegacyFollower,
    Publisher,
    UnifiedFollower,
    committed_messages,
    until_ok,
)
from tests.redis_server import RedisServer
from tests.support import Client

THREADS = 4
UNIFIED_CLIENTS = 12
LEGACY_CLIENTS = 6
RATE_PER_S = 40.0
BEFORE_FAULT = 60  # messages committed before the fault
AFTER_FAULT = 80  # messages committed after it
SETTLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Scenario:
    """A fault, and whether history survives it (then every unified gap must be replayed)."""

    inject: Callable[[Cluster, Publisher], Awaitable[None]]
    history_survives: bool
    appendonly: bool = False
    delivery: str = "stream"  # the workers' bus delivery (`?delivery=`)


async def redis_sigkill_restart(cluster: Cluster, _: Publisher) -> None:
    await asyncio.to_thread(cluster.redis.kill)
    await asyncio.to_thread(cluster.redis.start)


async def redis_restored_from_an_older_snapshot(cluster: Cluster, publisher: Publisher) -> None:
    await asyncio.to_thread(cluster.redis.save)  # Redis's default `save` setting takes such snapshots itself
    await publisher.reach(len(publisher.committed) + 20, SETTLE_TIMEOUT_S)  # events the snapshot lacks
    await asyncio.to_thread(cluster.redis.kill)
    await asyncio.to_thread(cluster.redis.start)  # loads the older RDB: epochs kept, seq counters back


async def flushall(cluster: Cluster, _: Publisher) -> None:
    await asyncio.to_thread(cluster.redis.flushall)


async def worker_kill_9(cluster: Cluster, _: Publisher) -> None:
    await asyncio.to_thread(cluster.workers[0].kill)


async def worker_sigterm(cluster: Cluster, _: Publisher) -> None:
    cluster.workers[0].terminate()


SCENARIOS = {
    "redis_sigkill_with_aof": Scenario(redis_sigkill_restart, history_survives=True, appendonly=True),
    "redis_sigkill_without_persistence": Scenario(redis_sigkill_restart, history_survives=False),
    "redis_restored_from_older_rdb": Scenario(redis_restored_from_an_older_snapshot, history_survives=False),
    "redis_flushall": Scenario(flushall, history_survives=False),
    "worker_kill_9": Scenario(worker_kill_9, history_survives=True),
    "worker_sigterm": Scenario(worker_sigterm, history_survives=True),
    # workers that follow topics lose what Redis pushed while it was down: they must say so, and
    # their clients must come back and replay it exactly
    "redis_sigkill_with_aof_delivery_by_topics": Scenario(redis_sigkill_restart, history_survives=True,
                                                          appendonly=True, delivery="topics"),
}


@pytest.fixture
def cluster_of(tmp_path: Path) -> Iterator[Callable[[Scenario], Cluster]]:
    made: list[tuple[Cluster, RedisServer]] = []

    def make(scenario: Scenario) -> Cluster:
        redis = RedisServer(appendonly=scenario.appendonly).start()
        cluster = Cluster(tmp_path, redis, delivery=scenario.delivery)
        made.append((cluster, redis))
        return cluster

    yield make
    for cluster, redis in made:
        cluster.stop()
        redis.close()


async def create_threads(cluster: Cluster) -> list[int]:
    async with httpx.AsyncClient(base_url=cluster.pick().url, timeout=10) as http:
        agent = (await http.post("/api/agents", json={"name": "chaos"})).raise_for_status().json()
        return [(await http.post("/api/threads", json={"agent_id": agent["id"]})).raise_for_status().json()["id"]
                for _ in range(THREADS)]


async def set_flags_revision(cluster: Cluster) -> int:
    async with httpx.AsyncClient(base_url=cluster.pick().url, timeout=10,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        response = await http.put("/api/admin/flags/message_created", json={"stage": "shadow", "force": True})
        response.raise_for_status()
        return int((await http.get("/api/admin/flags")).raise_for_status().json()["revision"])


async def settle(cluster: Cluster, unified: list[UnifiedFollower], legacy: list[LegacyFollower],
                 truth: dict[int, set[int]]) -> None:
    """Until every client holds every committed message of its threads (bounded)."""
    def missing() -> int:
        gaps = sum(len(truth[t] - f.tallies[t].held) for f in unified for t in f.threads)
        return gaps + sum(len(truth[f.thread] - f.tally.held) for f in legacy)

    try:
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            while missing():
                cluster.received.clear()
                await cluster.received.wait()
    except TimeoutError:
        pass  # the assertions below say who misses what


async def prove_no_worker_is_deaf(cluster: Cluster, thread: int) -> None:
    """A message posted on each live worker reaches a fresh client on every live worker."""
    live = cluster.live()
    clients = []
    for worker in live:
        client = await until_ok(lambda worker=worker: Client.open(f"{worker.ws_base}/api/ws"))
        await client.subscribe(f"thread:{thread}")
        clients.append(client)
    for worker in live:
        async with httpx.AsyncClient(base_url=worker.url, timeout=10) as http:
            posted = (await http.post(f"/api/threads/{thread}/messages",
                                      json={"content": f"probe via {worker.name}"})).raise_for_status().json()
        for client in clients:
            while (await client.expect("message_created"))["data"]["id"] != posted["id"]:
                pass
    for client in clients:
        await client.close()


async def revisions(cluster: Cluster) -> list[int]:
    found = []
    for worker in cluster.live():
        async with httpx.AsyncClient(base_url=worker.url, timeout=10) as http:
            found.append(int((await http.get("/healthz")).json()["flags_revision"]))
    return found


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_no_silent_loss_no_duplicate_no_deaf_worker(name: str, cluster_of: Callable[[Scenario], Cluster]) -> None:
    scenario = SCENARIOS[name]
    cluster = cluster_of(scenario)
    threads = await create_threads(cluster)
    revision = await set_flags_revision(cluster)
    late = asyncio.Event()  # half the unified clients come back only once the fault is well past
    unified = [UnifiedFollower(cluster, [threads[i % THREADS], threads[(i + 1) % THREADS]],
                               comes_back=late if i % 2 else None) for i in range(UNIFIED_CLIENTS)]
    legacy = [LegacyFollower(cluster, threads[i % THREADS]) for i in range(LEGACY_CLIENTS)]
    tasks = [asyncio.create_task(c.run()) for c in (*unified, *legacy)]
    async with asyncio.timeout(SETTLE_TIMEOUT_S):
        for client in (*unified, *legacy):
            await client.ready.wait()
    publisher = Publisher(cluster, threads, RATE_PER_S)
    publishing = asyncio.create_task(publisher.run())
    try:
        await publisher.reach(BEFORE_FAULT, SETTLE_TIMEOUT_S)
        await scenario.inject(cluster, publisher)
        await publisher.reach(len(publisher.committed) + AFTER_FAULT // 2, SETTLE_TIMEOUT_S)
        late.set()
        await publisher.reach(len(publisher.committed) + AFTER_FAULT // 2, SETTLE_TIMEOUT_S)
    finally:
        publisher.stopping = True
        await publishing
    truth = {thread: await committed_messages(cluster, thread) for thread in threads}
    assert set(publisher.committed) <= set().union(*truth.values())  # every 201 is in the database
    await settle(cluster, unified, legacy, truth)

    lost = {f"unified {i} thread {t}": sorted(truth[t] - f.tallies[t].held)
            for i, f in enumerate(unified) for t in f.threads if truth[t] - f.tallies[t].held}
    lost |= {f"legacy {i} thread {f.thread}": sorted(truth[f.thread] - f.tally.held)
             for i, f in enumerate(legacy) if truth[f.thread] - f.tally.held}
    assert lost == {}, f"{name}: committed messages never delivered"
    duplicates = [f.tallies[t].duplicates for f in unified for t in f.threads] + [f.tally.duplicates for f in legacy]
    assert sum(duplicates) == 0, f"{name}: events delivered twice"
    assert publisher.errors == [], f"{name}: requests answered 5xx"
    resyncs = sum(f.resyncs for f in unified)
    if scenario.history_survives:
        assert resyncs == 0, f"{name}: history survived, yet {resyncs} subscriptions were not replayed"
        for follower in unified:  # every message arrived as an event: nothing needed a snapshot
            for thread in follower.threads:
                assert truth[thread] - follower.tallies[thread].from_events <= follower.tallies[thread].from_snapshots
    else:
        assert resyncs > 0, f"{name}: the loss of history was never reported (recovered: false)"

    await prove_no_worker_is_deaf(cluster, threads[0])
    found = await revisions(cluster)
    assert len(set(found)) == 1, f"{name}: workers on flags revisions {found}"
    assert found[0] >= revision, f"{name}: flags revision {found[0]} is older than {revision}, set before the fault"
    for client in (*unified, *legacy):
        await client.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
