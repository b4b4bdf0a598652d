"""Prometheus multiprocess mode: two uvicorn workers, one scrape target, counters summed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.process.server_process import ServerProcess


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    (directory / "counter_999.db").write_bytes(b"stale file from an earlier run")
    # two workers on a fresh database, both creating tables and seeding the demo user at once
    server = ServerProcess(tmp_path, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(directory),
                                                     "WSMIGRATE_DEMO_TOKEN": "demo-token"})
    try:
        yield server.url, directory
    finally:
        server.stop()


def published(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wsmigrate_events_published_total" and sample.labels.get("event_type") == "agent_created":
                total += sample.value
    return total


def test_one_scrape_sums_every_worker_and_stale_files_are_wiped(two_workers: tuple[str, Path]) -> None:
    url, directory = two_workers
    assert not (directory / "counter_999.db").exists()
    with httpx.Client(base_url=url, timeout=10) as client:
        for index in range(20):  # new connections: the kernel spreads them over both workers
            with httpx.Client(base_url=url, timeout=10) as fresh:
                fresh.post("/api/agents", json={"name": f"a{index}"}).raise_for_status()
        text = client.get("/metrics").text
    assert published(text) == 20
    pids = {p.name.split("_")[-1] for p in directory.glob("counter_*.db")}
    assert len(pids) == 2, pids  # both workers wrote their own files
