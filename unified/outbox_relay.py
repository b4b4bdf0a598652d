"""`OutboxRelay`: publishes the transactional outbox's committed events, exactly once, in order.

One relay runs per worker (the runtime starts it with the bus). Two ways an event reaches it:

* **Fast path.** A commit on this worker hands its events over (`committed`, from any thread).
  They are published at once, in commit order, and their rows deleted. A route that staged an
  event can wait for it (`wait_published`, bounded), so when the bus is healthy an event is
  sequenced before the request answers, as with a direct publish.
* **Sweep.** Every `sweep_interval_s` the relay reads the table, oldest row first, and publishes
  what it finds: rows older than `grace_s` normally (rows a dead worker left, or whose delete
  failed), every row while it works off a backlog.

When a publish fails (the bus is down) the relay goes into backlog mode: from then on new
commits are not published directly (they would overtake the older rows), everything goes through
the table in id order, retried with a growing pause (up to `retry_max_s`), until the table is
drained. The application never sees the failure: its transaction committed, its request succeeds.

Publishing a row twice (a worker died between publish and delete; two workers' sweeps met on the
same row) is suppressed by the bus's `event_id` dedup and counted as `duplicate`.
Every drop is visible: `wsmigrate_outbox_events_total{outcome}`, `wsmigrate_outbox_backlog`,
`wsmigrate_outbox_oldest_age_seconds`.

The table is read and written in worker threads (`_off_loop`), and cancelling the task that waits
for one does not stop the thread. So `stop` also waits (bounded) for the calls still running: an
application that disposes its engine after wsmigrate stopped must not close a connection under a
query (on an in-memory SQLite, whose one connection all callers share, that crashed the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from wsmigrate.metrics import WsMetrics
from wsmigrate.unified.bus import EventBus
from wsmigrate.unified.events import now_ms
from wsmigrate.unified.transactional_outbox import Backlog, StagedEvent, TransactionalOutbox

log = logging.getLogger(__name__)

ORIGIN = "outbox"
DEFAULT_BATCH = 200
DEFAULT_QUEUE = 10_000
_R = TypeVar("_R")


class OutboxRelay:
    """Publishes what `outbox` committed onto `bus` (see module docstring)."""

    def __init__(
        self,
        outbox: TransactionalOutbox,
        bus: EventBus,
        *,
        metrics: WsMetrics | None = None,
        sweep_interval_s: float = 1.0,
        grace_s: float = 5.0,
        retry_max_s: float = 5.0,
        batch_size: int = DEFAULT_BATCH,
        queue_capacity: int = DEFAULT_QUEUE,
    ) -> None:
        if sweep_interval_s <= 0 or grace_s < 0 or retry_max_s <= 0 or batch_size < 1 or queue_capacity < 1:
            raise ValueError("outbox relay bounds must be positive")
        self.outbox = outbox
        self.bus = bus
        self.metrics = metrics
        self.sweep_interval_s = sweep_interval_s
        self.grace_s = grace_s
        self.retry_max_s = retry_max_s
        self.batch_size = batch_size
        self.queue_capacity = queue_capacity
        self._queue: deque[StagedEvent] = deque()
        self._waiters: dict[str, asyncio.Future[bool]] = {}
        # Outcomes nobody waited for yet (a waiter may come after its event was published); bounded.
        self._outcomes: OrderedDict[str, bool] = OrderedDict()
        self._wake = asyncio.Event()
        # Start in backlog mode: what a previous run of the app committed and never published is
        # published first, before anything committed from now on.
        self._backlog = True
        self._retry_s = 0.0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_backlog = Backlog(0, None)
        self._sweep_waiters: list[asyncio.Future[Backlog]] = []
        self._in_flight: set[asyncio.Future[Any]] = set()  # table calls running in worker threads

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._off_loop(self.outbox.create_table)
        self.outbox.attach(self)
        await self._sweep()  # what an earlier run left, before the first request (one batch)
        self._task = self._loop.create_task(self._run(), name="wsmigrate-outbox-relay")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop after the step in progress (bounded); what is left stays in the table for the next
        start or another worker's sweep."""
        self.outbox.attach(None)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=timeout_s)
        if self._in_flight:  # the thread of a cancelled call still uses the engine (module docstring)
            _, running = await asyncio.wait(set(self._in_flight), timeout=timeout_s)
            if running:
                log.warning("outbox table calls still running after %.1fs", timeout_s)
        self._settle(list(self._waiters), False)
        self._queue.clear()
        self._outcomes.clear()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @property
    def backlogged(self) -> bool:
        return self._backlog

    # -- the fast path ---------------------------------------------------------------------------

    def committed(self, staged: list[StagedEvent]) -> None:
        """A transaction committed these (called in the committing thread, or on the loop)."""
        self._count("committed", len(staged))
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not running: the rows wait in the table
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._accept(staged)
        else:
            loop.call_soon_threadsafe(self._accept, staged)

    def _accept(self, staged: list[StagedEvent]) -> None:
        if self._backlog or len(self._queue) + len(staged) > self.queue_capacity:
            self._backlog = True  # the table has them, in order; the sweep publishes them
            self._count("deferred", len(staged))
            self._settle((item.event.event_id for item in staged), False)
        else:
            self._queue.extend(staged)
        self._wake.set()

    async def wait_published(self, event_ids: Sequence[str], timeout_s: float) -> bool:
        """True once every one of `event_ids` is on the bus; False if any was deferred to the sweep
        or the wait timed out (the events are committed either way and will be published)."""
        loop = asyncio.get_running_loop()
        futures = []
        for event_id in event_ids:
            outcome = self._outcomes.pop(event_id, None)
            if outcome is not None:
                if not outcome:
                    return False
                continue
            future = self._waiters.get(event_id)
            if future is None:
                future = self._waiters[event_id] = loop.create_future()
            futures.append(future)
        try:
            results = await asyncio.wait_for(asyncio.gather(*futures), timeout_s)
        except TimeoutError:
            return False
        finally:
            for event_id in event_ids:
                self._waiters.pop(event_id, None)
        return all(results)

    def _settle(self, event_ids: Iterable[str], published: bool) -> None:
        for event_id in list(event_ids):
            future = self._waiters.pop(event_id, None)
            if future is None:
                self._outcomes[event_id] = published
                if len(self._outcomes) > self.queue_capacity:
                    self._outcomes.popitem(last=False)
            elif not future.done():
                future.set_result(published)

    async def after_sweep(self) -> Backlog:
        """The backlog as the next complete sweep leaves it (for operators' tools and tests)."""
        future: asyncio.Future[Backlog] = asyncio.get_running_loop().create_future()
        self._sweep_waiters.append(future)
        return await future

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        next_sweep = 0.0
        loop = asyncio.get_running_loop()
        while True:
            pause = max(0.0, next_sweep - loop.time())
            if not self._queue:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()
            if self._queue and not self._backlog:
                await self._publish_queued()
            if loop.time() >= next_sweep:
                drained = await self._sweep()
                if self._backlog and not drained:
                    self._retry_s = min(self.retry_max_s, max(0.05, self._retry_s * 2))
                    next_sweep = loop.time() + self._retry_s
                else:
                    self._retry_s = 0.0
                    # while rows are left (a full batch), sweep again at once
                    next_sweep = loop.time() + (0.0 if self._backlog else self.sweep_interval_s)

    async def _publish_queued(self) -> None:
        """Publish what this worker committed, in order; on a failure the rest goes to the table."""
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_size))]
        published, failed_at = await self._publish(batch)
        if failed_at is not None:
            self._backlog = True
            rest = batch[failed_at:] + list(self._queue)
            self._queue.clear()
            self._count("deferred", len(rest))
            self._settle((item.event.event_id for item in rest), False)
        await self._remove(published)
        self._settle((item.event.event_id for item in published), True)

    async def _sweep(self) -> bool:
        """Publish rows from the table, oldest first. True when nothing is left to do."""
        before = None if self._backlog else now_ms() - int(self.grace_s * 1000)
        try:
            rows = await self._off_loop(self.outbox.pending, self.batch_size, committed_before_ms=before)
        except SQLAlchemyError as exc:
            self._count("store_failed")
            log.error("cannot read the outbox table (%r); retrying", exc)
            return False
        published, failed_at = await self._publish(rows)
        removed = await self._remove(published)
        self._settle((item.event.event_id for item in published), True)
        drained = failed_at is None and removed and len(rows) < self.batch_size
        if self._backlog and drained and not self._queue:
            self._backlog = False
            log.info("outbox backlog worked off; publishing commits directly again")
        await self._measure()
        waiters, self._sweep_waiters = self._sweep_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(self.last_backlog)
        return drained

    async def _publish(self, items: list[StagedEvent]) -> tuple[list[StagedEvent], int | None]:
        """Publish `items` one after the other; stop at the first failure (its index)."""
        done: list[StagedEvent] = []
        for index, item in enumerate(items):
            try:
                accepted = await self.bus.publish(item.event, origin=ORIGIN)
            except Exception as exc:  # noqa: BLE001 - any bus failure: the row stays, retried later
                self._count("publish_failed")
                if not self._backlog:
                    log.warning("outbox relay cannot publish (%r); committed events wait in the table", exc)
                return done, index
            self._count("published" if accepted else "duplicate")
            done.append(item)
        return done, None

    async def _remove(self, items: list[StagedEvent]) -> bool:
        if not items:
            return True
        try:
            await self._off_loop(self.outbox.remove, [item.row_id for item in items])
        except SQLAlchemyError as exc:  # published already: a later sweep re-publishes, dedup suppresses
            self._count("store_failed")
            log.error("cannot delete %d published outbox rows (%r); they are retried", len(items), exc)
            return False
        return True

    async def _measure(self) -> None:
        try:
            self.last_backlog = await self._off_loop(self.outbox.backlog)
        except SQLAlchemyError:
            return
        if self.metrics:
            oldest = self.last_backlog.oldest_ms
            self.metrics.outbox_backlog.set(self.last_backlog.rows)
            self.metrics.outbox_oldest_age.set(0 if oldest is None else max(0.0, (now_ms() - oldest) / 1000))

    async def _off_loop(self, call: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
        """`call` in a worker thread, tracked until the call is done (not only until the waiting
        task is cancelled), so `stop` can wait for it."""
        future = asyncio.get_running_loop().run_in_executor(None, functools.partial(call, *args, **kwargs))
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(future)

    def _count(self, outcome: str, amount: int = 1) -> None:
        if self.metrics and amount:
            self.metrics.outbox_events.labels(outcome).inc(amount)
