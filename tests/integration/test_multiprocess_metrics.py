"""Prometheus multiprocess mode: two uvicorn workers, one scrape target, counters summed."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    directory = tmp_path / "multiproc"
    directory.mkdir()
    (directory / "counter_999.db").write_bytes(b"stale file from an earlier run")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "WSMIGRATE_STREAM_DELAY_MS": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "serve", "--port", str(port), "--workers", "2", "--log-level", "info",
         "--database-url", f"sqlite:///{tmp_path}/app.db"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_lines(process, "Application startup complete", count=2, timeout=30)
        yield url, directory
    finally:
        process.terminate()
        process.wait(20)


def wait_for_lines(process: subprocess.Popen[str], marker: str, *, count: int, timeout: float) -> None:
    """Read the server's log until `marker` was printed `count` times (each worker prints it once)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        if not ready:
            pytest.fail(f"server did not print {marker!r} {count} times within {timeout} s")
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"server exited: {process.wait()}")
        seen += marker in line


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
