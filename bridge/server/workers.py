"""One in-memory bus serves one process: refuse to start as one of several workers on it.

The in-memory bus sequences and delivers inside its process, so N workers on it are N separate
buses: a client on worker A would never see what worker B publishes. That is a silent, partial
outage, so every worker refuses to start instead, with a message saying what to do. Several
workers are recognised where they are declared: `--workers N` (uvicorn, `wsmigrate serve`),
`-w N` / `--workers N` (gunicorn) on the command line the workers share, or `WEB_CONCURRENCY`,
which both servers honour. A count set only in a gunicorn config file is not visible to a worker:
docs/operations.md says to set `WEB_CONCURRENCY` there too, or simply to use Redis.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from wsmigrate.bridge.errors import BridgeError

ADVICE = ("give every worker one shared Redis bus (WSMIGRATE_BUS_URL=redis://host:6379/0, with "
          "PROMETHEUS_MULTIPROC_DIR for the metrics) or run a single worker")


class SeveralWorkersError(BridgeError):
    """Several worker processes were started on the in-memory bus."""


def declared_workers(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The worker count a command line or `WEB_CONCURRENCY` declares (1 when none does)."""
    count = 1
    raw = environ.get("WEB_CONCURRENCY", "").strip()
    if raw.isdigit():
        count = int(raw)
    for index, arg in enumerate(argv):
        value: str | None = None
        if arg in ("--workers", "-w") and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--workers="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-w") and arg[2:].isdigit():
            value = arg[2:]
        if value is not None and value.strip().isdigit():
            count = int(value)
    return count


def refuse_several_workers(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Raise `SeveralWorkersError` if this process is declared one of several workers."""
    workers = declared_workers(sys.argv if argv is None else argv, os.environ if environ is None else environ)
    if workers > 1:
        raise SeveralWorkersError(f"{workers} workers cannot share the in-memory bus (each would see only its "
                                  f"own events): {ADVICE}")
