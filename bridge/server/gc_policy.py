"""How the server runs CPython's cycle collector: freeze the start-up heap, make full passes rare.

Why it matters here. A full collection walks every tracked object of the process. After start-up
that is ~200k objects (modules, the app, pydantic and SQLAlchemy schemas), and every open socket
adds ~150 more (its protocol, parser, ASGI task and coroutine chain). Measured on the benchmark
machine (docs/benchmarks.md): with 1,000 sockets a full pass takes 40-110 ms and Python's default
thresholds run one every few seconds under load, which is a latency spike for every client and,
in a burst, several percent of throughput. Two measures, both process-wide and both reversible:

* `freeze`: after start-up everything built so far moves to the permanent generation, so no
  collection walks it again (`gc.freeze`). Undone at shutdown (several servers share a test process).
* `thresholds`: `700,10,100` keeps young collections as they are but runs a full pass after 100
  middle-generation passes instead of 10. Cyclic garbage of closed connections waits longer; in
  the benchmark's 30-second runs no full pass happened after start-up at all (from five).

Both are settings (`WSMIGRATE_GC_FREEZE`, `WSMIGRATE_GC_THRESHOLDS`; an empty value leaves Python's).
"""

from __future__ import annotations

import gc


def parse_thresholds(text: str) -> tuple[int, int, int] | None:
    """`"700,10,100"` -> (700, 10, 100); empty -> None (leave the interpreter's)."""
    if not text.strip():
        return None
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(f"GC thresholds must be three positive integers, got {text!r}")
    return parts[0], parts[1], parts[2]


class CollectorPolicy:
    """Applies the policy at start-up and restores the interpreter's settings at shutdown."""

    def __init__(self, *, freeze: bool, thresholds: tuple[int, int, int] | None) -> None:
        self.freeze = freeze
        self.thresholds = thresholds
        self._previous: tuple[int, int, int] | None = None

    def apply(self) -> None:
        if self.thresholds is not None:
            self._previous = gc.get_threshold()
            gc.set_threshold(*self.thresholds)
        if self.freeze:
            gc.freeze()

    def restore(self) -> None:
        if self.freeze:
            gc.unfreeze()
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            self._previous = None
