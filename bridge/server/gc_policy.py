"""How the server runs CPython's cycle collector: full passes that walk only what is new.

Why it matters here. A full collection walks every tracked object of the process and stops every
socket of the worker meanwhile. After start-up that is ~200k objects (modules, the app, pydantic
and SQLAlchemy schemas), and every open socket adds ~160 more (its protocol, parser, ASGI task and
coroutine chain): with 10,000 sockets a full pass over everything takes 0.5-1.3 s on the
benchmark machine (docs/benchmarks.md, reconnect storm).

`freeze` (on by default, `WSMIGRATE_GC_FREEZE`):

* after start-up everything built so far moves to the permanent generation (`gc.freeze`), and
  again after every full pass: what survived it is live, so no later pass walks it again. A full
  pass then costs what was allocated since the previous one, and with Python's own thresholds
  (`700,10,10`) passes are frequent and small: the longest pause while 10,000 clients reconnect
  at once fell from 1.3 s to ~20 ms.
* frozen objects are still freed by reference counting when they die; only garbage in reference
  cycles among them would wait. A finished socket leaves none (`bridge/server/ws_protocol.py`
  breaks the cycles it used to leave, `tests/integration/test_gc_cycles.py` pins that), so the
  frozen generation follows the live heap. As a bound for cyclic garbage from elsewhere, the
  generation is counted every `THAW_CHECK_S` (10 minutes; the count walks it) and thawed
  (`gc.unfreeze`) when it has doubled since the last thaw: the next full pass walks everything
  once, then freezing resumes. Not sooner, and not in a process's first 10 minutes, because the
  heap also doubles when thousands of clients connect, typically right after a start (a restart
  is followed by a reconnect storm), and a whole-heap pass then would stop them all for ~1 s. So
  frozen garbage stays within the live heap plus ten minutes of growth, and a whole-heap pause
  (0.5-1.3 s at 10,000 sockets) happens at most once per ten minutes, after a doubling.

`thresholds` (`WSMIGRATE_GC_THRESHOLDS`, empty by default: Python's) are the interpreter's three
collection thresholds; with freezing off, `700,10,100` makes full passes over the whole heap ten
times rarer.

Every collection is timed (`CollectorPauses`, a `gc.callbacks` hook) and exported as
`wsmigrate_gc_pause_seconds{generation}`, and the frozen generation's size as
`wsmigrate_gc_frozen_objects`: a pause stops every socket of the worker, so operators see it beside
the delivery latency it explains. The hooks run inside whatever allocation triggered the
collection, so they only add to plain numbers; the metric batch publishes them at its next flush
and before every scrape (`MetricBatch.add_source`). Everything is process-wide and undone at
shutdown (several servers share a test process).
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from wsmigrate.metrics.batch import Latency, add_observations


def parse_thresholds(text: str) -> tuple[int, int, int] | None:
    """`"700,10,100"` -> (700, 10, 100); empty -> None (leave the interpreter's)."""
    if not text.strip():
        return None
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(f"GC thresholds must be three positive integers, got {text!r}")
    return parts[0], parts[1], parts[2]


GENERATIONS = 3


class CollectorPauses:
    """How long each collection stopped the process, per generation (the oldest one collected).

    `longest_s` is the longest pause since the last `take_longest()`, for a benchmark or a probe
    that asks "what was the worst pause during this window"; the histogram keeps the distribution.
    """

    def __init__(self, histogram: Any | None = None) -> None:
        self.collections = [0] * GENERATIONS
        self.paused_s = [0.0] * GENERATIONS
        self.longest_s = 0.0
        self._pending = [] if histogram is None else [Latency(histogram.labels(str(g))) for g in range(GENERATIONS)]
        self._started: float | None = None
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._on_collection)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_collection)
            self._installed = False

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        started, self._started = self._started, None
        if started is None:  # installed while a collection ran
            return
        paused = time.perf_counter() - started
        generation = min(max(int(info.get("generation", 0)), 0), GENERATIONS - 1)
        self.collections[generation] += 1
        self.paused_s[generation] += paused
        self.longest_s = max(self.longest_s, paused)
        if self._pending:
            latency = self._pending[generation]
            latency.counts[bisect_left(latency.bounds, paused)] += 1
            latency.total += paused

    def take_longest(self) -> float:
        """The longest pause since the previous call (or since start), and start a new window."""
        longest, self.longest_s = self.longest_s, 0.0
        return longest

    def publish(self) -> None:
        """Add the pauses recorded since the last call to the histogram (a `MetricBatch` source)."""
        for latency in self._pending:
            if any(latency.counts):
                counts, total = latency.counts, latency.total
                latency.counts, latency.total = [0] * len(latency.bounds), 0.0
                add_observations(latency.child, counts, total)

    def summary(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "paused_ms": [round(s * 1000, 3) for s in self.paused_s],
            "longest_ms": round(self.longest_s * 1000, 3),
        }


# Counting the frozen generation walks it (20-100 ms at 10,000 sockets, a pause of its own), and a
# thaw costs one whole-heap pass: both at most this often, and not before this long after start.
THAW_CHECK_S = 600.0


class CollectorPolicy:
    """Applies the policy at start-up and restores the interpreter's settings at shutdown."""

    def __init__(self, *, freeze: bool, thresholds: tuple[int, int, int] | None,
                 pauses: CollectorPauses | None = None, frozen_gauge: Any | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.freeze = freeze
        self.thresholds = thresholds
        self.pauses = pauses or CollectorPauses()
        self.frozen_gauge = frozen_gauge
        self.thaws = 0
        self._clock = clock
        self._previous: tuple[int, int, int] | None = None
        self._thaw_above: int | None = None  # frozen objects at which the generation is thawed
        self._checked_at = 0.0  # set when the policy is applied
        self._installed = False

    def _after_collection(self, phase: str, info: dict[str, int]) -> None:
        """After a full pass: freeze its survivors; thaw once the frozen generation has doubled."""
        if phase != "stop" or info.get("generation") != GENERATIONS - 1:
            return
        gc.freeze()
        now = self._clock()
        if now - self._checked_at < THAW_CHECK_S:
            return
        self._checked_at = now
        frozen = gc.get_freeze_count()
        if self.frozen_gauge is not None:
            self.frozen_gauge.set(frozen)
        if self._thaw_above is None:
            self._thaw_above = 2 * frozen
        elif frozen > self._thaw_above:
            gc.unfreeze()  # the next full pass walks everything once; its survivors set the new mark
            self.thaws += 1
            self._thaw_above = None

    def apply(self) -> None:
        self._checked_at = self._clock()
        if self.freeze and not self._installed:  # before the recorder's hook: its pause includes this work
            gc.callbacks.append(self._after_collection)
            self._installed = True
        self.pauses.install()
        if self.thresholds is not None:
            self._previous = gc.get_threshold()
            gc.set_threshold(*self.thresholds)
        if self.freeze:
            gc.freeze()
            frozen = gc.get_freeze_count()  # the start-up heap: cheap to count, nobody is connected yet
            self._thaw_above = 2 * frozen
            if self.frozen_gauge is not None:
                self.frozen_gauge.set(frozen)

    def restore(self) -> None:
        self.pauses.uninstall()
        if self._installed:
            gc.callbacks.remove(self._after_collection)
            self._installed = False
        if self.freeze:
            gc.unfreeze()
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            self._previous = None
