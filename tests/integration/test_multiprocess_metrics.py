"""Prometheus multiprocess mode: two uvicorn workers, one scrape target, counters summed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.process.server_process import ServerProcess
from tests.redis_server import bus_url
from wsmigrate.metrics.batch import FLUSH_INTERVAL_S


@pytest.fixture
def two_workers(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[tuple[ServerProcess, Path]]:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    (directory / "counter_999.db").write_bytes(b"stale file from an earlier run")
    # two workers on a fresh database, both creating tables and seeding the demo user at once;
    # several workers need a shared bus (the in-memory one is refused, see test_serve_refuses_...)
    server = ServerProcess(tmp_path, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(directory),
                                                     "WSMIGRATE_DEMO_TOKEN": "demo-token",
                                                     "WSMIGRATE_BUS_URL": bus_url(redis_url, redis_prefix)})
    try:
        yield server, directory
    finally:
        server.stop()


def published(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wsmigrate_events_published_total" and sample.labels.get("event_type") == "agent_created":
                total += sample.value
    return total


def test_one_scrape_sums_every_worker_and_stale_files_are_wiped(two_workers: tuple[ServerProcess, Path]) -> None:
    server, directory = two_workers
    url = server.url
    assert not (directory / "counter_999.db").exists()
    with httpx.Client(base_url=url, timeout=10) as client:
        for index in range(20):  # new connections: the kernel spreads them over both workers
            with httpx.Client(base_url=url, timeout=10) as fresh:
                fresh.post("/api/agents", json={"name": f"a{index}"}).raise_for_status()
        # The worker serving the scrape publishes its own tallies first; the other one's arrive
        # within its flush interval (metrics.batch.FLUSH_INTERVAL_S): the sum converges, never overshoots.
        deadline = time.monotonic() + 10 * FLUSH_INTERVAL_S
        seen = published(client.get("/metrics").text)
        while seen < 20 and time.monotonic() < deadline:
            assert seen <= 20
            seen = published(client.get("/metrics").text)
    assert seen == 20
    pids = {p.name.split("_")[-1] for p in directory.glob("counter_*.db")}
    assert len(pids) == 2, pids  # both workers wrote their own files

    server.stop()  # the workers go with the master: nothing is left running after the test
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists() and _alive(int(pid))]


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for its (gone) parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_serve_refuses_several_workers_on_the_in_memory_bus(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot share the in-memory bus") as refused:
        ServerProcess(tmp_path, workers=2)
    assert "--bus redis://" in str(refused.value)
