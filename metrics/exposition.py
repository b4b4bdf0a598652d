"""The `/metrics` exposition, single-process or multiprocess.

With several uvicorn workers on one host, each worker is its own process with its own counters.
prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`) has every process write its
values to files in that directory; the scrape then sums counters and histograms across workers,
sums live gauges (`livesum`), and keeps per-process gauges apart by `pid` where workers must be
compared (`all`: flag revision, stage, bus liveness). `wsmigrate serve` wipes the directory at
start, because files left by a previous run would be counted again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
__all__ = ["CONTENT_TYPE_LATEST", "MULTIPROCESS_ENV", "prepare_multiprocess_dir", "render"]


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition: this process's registry, or every worker's in multiprocess mode."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        aggregate = CollectorRegistry()
        MultiProcessCollector(aggregate, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(aggregate)
    return generate_latest(registry)


def prepare_multiprocess_dir(directory: Path) -> None:
    """Empty (or create) the multiprocess directory before any worker starts."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
