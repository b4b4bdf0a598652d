"""What the two kinds of Redis bus reader share: liveness, discontinuity reports, the seq check.

A worker reads each shard of the bus with one reader: a `StreamListener` (the global stream,
`unified.redis_listener`) or a `TopicFollower` (pushes of what it follows, `unified.redis_follower`).
Both prove they are live the same way (the worker's own heartbeats must come back through them:
`own_beat`), publish that liveness the same way (`on_liveness`, which the backend sums up in
`unified.shard_liveness`, and `wait_until_healthy`), report what they could not deliver the same
way (`on_discontinuity(reason)`, which the composition root turns into clients resyncing with
`since`), and check that a topic's `seq` follows on from the last one delivered in its epoch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Container

from wsmigrate.unified.publication import Publication

log = logging.getLogger(__name__)

OnDiscontinuity = Callable[[str], None]
TRACKED_TOPICS = 100_000  # per-topic last seq kept for the continuity check (least recent forgotten)


class BusReader:
    """The shared state and checks of a bus reader (module docstring); subclasses read."""

    def __init__(self, *, worker_id: str, stale_after_s: float, on_liveness: Callable[[], None] | None,
                 on_discontinuity: OnDiscontinuity | None) -> None:
        self.worker_id = worker_id
        self.stale_after_s = stale_after_s
        # Called whenever this reader's liveness is refreshed: the owner publishes the gauges (for
        # a sharded bus, the worst of its readers: `unified.shard_liveness`).
        self._on_liveness = on_liveness
        self.on_discontinuity = on_discontinuity
        self._started_at = time.monotonic()
        self._own_beat_at: float | None = None
        self._beat_seen = asyncio.Event()
        self._reported_up: bool | None = None
        self._liveness_changed = asyncio.Event()
        self._topic_seqs: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._gap_in_batch = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.discontinuities = 0

    # -- liveness --------------------------------------------------------------------------------

    def _reading(self) -> bool:
        """Whether the reader holds a working connection now (each kind knows its own)."""
        raise NotImplementedError

    def heartbeat_age(self) -> float:
        """Seconds since this worker sent the newest own heartbeat this reader has received."""
        sent = self._own_beat_at if self._own_beat_at is not None else self._started_at
        return max(0.0, time.monotonic() - sent)

    def healthy(self) -> bool:
        return bool(self._tasks) and self._reading() and self.heartbeat_age() <= self.stale_after_s

    def _own_beat(self, sent_at: float) -> None:
        self._own_beat_at = sent_at
        self._beat_seen.set()
        self._refresh()

    async def _first_beat(self, timeout: float) -> bool:
        """Whether an own heartbeat came back within `timeout` of starting."""
        try:
            await asyncio.wait_for(self._beat_seen.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _keep_going(self) -> None:
        """End the calling loop if the reader is stopping, even if redis-py ate the cancellation
        (redis/redis-py#2028)."""
        task = asyncio.current_task()
        if self._stopping or (task is not None and task.cancelling()):
            raise asyncio.CancelledError

    def _refresh(self) -> None:
        """Publish liveness as of now: to the owner (`on_liveness`) and to `wait_until_healthy`."""
        up = self.healthy()
        if self._on_liveness is not None:
            self._on_liveness()
        if up != self._reported_up:
            self._reported_up = up
            self._liveness_changed.set()
            self._liveness_changed = asyncio.Event()

    async def wait_until_healthy(self, healthy: bool, timeout: float) -> None:
        """Wait (bounded) until the published liveness is `healthy`: for readiness checks and tests."""
        async with asyncio.timeout(timeout):
            while self._reported_up is not healthy:
                await self._liveness_changed.wait()

    # -- continuity ------------------------------------------------------------------------------

    def _check_continuity(self, publication: Publication, checked: Container[str] | None = None) -> None:
        """Flag a topic (of `checked`, or any) whose `seq` does not follow the last one delivered
        in the same epoch; `_report_gap` reports it once per batch."""
        tracked = self._topic_seqs
        for topic in publication.topics:
            if checked is not None and topic not in checked:
                continue
            epoch, seq = publication.epochs[topic], publication.seqs[topic]
            seen = tracked.get(topic)
            if seen is not None and seen[0] == epoch and seq != seen[1] + 1:
                self._gap_in_batch = True
            tracked[topic] = (epoch, seq)
            tracked.move_to_end(topic)
            if len(tracked) > TRACKED_TOPICS:
                tracked.popitem(last=False)

    def _report_gap(self) -> None:
        """Once per batch: a lost stretch usually breaks many topics at once."""
        if self._gap_in_batch:
            self._gap_in_batch = False
            log.error("bus delivery skipped events (a topic's seq did not follow on); clients must resync")
            self._discontinuity("gap")

    def _lost_data(self, old: str | None, new: str) -> None:
        """Redis came back with another dataset (restarted empty, flushed): say so, and report it."""
        log.error("the Redis bus lost its data (incarnation %s -> %s): topics restart with new epochs", old, new)
        self._discontinuity("reset")

    def _discontinuity(self, reason: str) -> None:
        self.discontinuities += 1
        if self.on_discontinuity is not None:
            try:
                self.on_discontinuity(reason)
            except Exception:  # broad on purpose (logged): the callback is the application's; the reader must go on
                log.exception("on_discontinuity(%r) failed", reason)
