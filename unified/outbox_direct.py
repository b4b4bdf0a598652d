"""`DirectOutbox`: finished frames written straight to the socket's transport, batched per loop turn.

Why it is fast. A fan-out used to cost, per recipient, an ASGI `send` through the middleware
chain, framing by the protocol library and one `write` system call. Here the frame of an event
is built once per topic (`unified.wire`); putting it on an outbox appends a reference to a list,
and the first put of a loop turn marks the outbox dirty on the loop's `FlushScheduler`. One
callback per loop turn then writes every dirty outbox's frames with a single `transport.write`:
a burst of events to one socket leaves as one write, not one per frame, and a socket that got
nothing costs nothing.

Coalescing under back-to-back traffic. While the loop goes straight from one flush to the next
frame (a publisher that yields after every event, a reply streamed token by token), a flush per
loop turn costs a callback, a pass over the dirty outboxes and a ticket settlement per event. So
a frame put less than `BUSY_GAP_S` after the previous flush began waits up to the scheduler's
`coalesce_s` (`WSMIGRATE_WRITE_COALESCE_MS`, 1 ms for `wsmigrate serve`) and leaves with
everything queued meanwhile: at most one flush per window while traffic is back to back, several
frames of one socket in one write. A frame after a quieter moment (paced traffic, one event now
and then) still leaves at the end of its loop turn; `coalesce_s=0` always writes per turn.
`tests/unit/test_outbox_direct.py` pins both to the same bytes in the same order.

Flow control. While the transport's buffer is above its high-water mark the outbox stops writing
and a writer task waits for the transport to drain, then writes everything queued meanwhile in
one go. Frames keep counting against the outbox capacity, so a client that stops reading is closed
with 1013 (slow consumer) exactly as with the ASGI outbox.

Accounting. A written frame costs its event's `DeliveryTicket` nothing at write time: the flush
collects the tickets of everything it wrote and settles them together, one update per event
and loop turn (`metrics.ledger.settle`), not one per recipient.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable

from starlette.websockets import WebSocket

from wsmigrate.metrics.ledger import DeliveryTicket, settle
from wsmigrate.unified.outbox import DEFAULT_OUTBOX_CAPACITY, AsgiOutbox, CloseSocket, Outbox, OutFrame
from wsmigrate.unified.transport import PAUSED, WRITTEN, DirectTransport, direct_transport
from wsmigrate.unified.wire import text_frame

DEFAULT_COALESCE_S = 0.001
# A frame this soon after the previous flush began means traffic is back to back: the loop went
# from one flush to the next event without waiting (a turn of the fan-out takes tens of µs; paced
# or occasional traffic leaves milliseconds between events, and is never held).
BUSY_GAP_S = 0.0002


class FlushScheduler:
    """One per event loop: writes the outboxes that got frames, at the end of the loop turn or,
    under back-to-back traffic, once per `coalesce_s` (see the module docstring)."""

    __slots__ = ("_clock", "_flushed_at", "_handle", "_loop", "coalesce_s", "dirty")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, coalesce_s: float = DEFAULT_COALESCE_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if coalesce_s < 0:
            raise ValueError("coalesce_s must not be negative")
        self._loop = loop
        self.coalesce_s = coalesce_s
        self.dirty: list[DirectOutbox] = []
        self._handle: asyncio.Handle | None = None
        self._clock = clock
        self._flushed_at = -BUSY_GAP_S  # when the last flush began

    def mark(self, outbox: DirectOutbox) -> None:
        self.dirty.append(outbox)
        if self._handle is None:
            if self.coalesce_s and self._clock() - self._flushed_at < BUSY_GAP_S:
                self._handle = self._loop.call_later(self.coalesce_s, self._run)
            else:
                self._handle = self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._handle = None
        self._flushed_at = self._clock()
        dirty, self.dirty = self.dirty, []
        written: list[DeliveryTicket] = []
        for outbox in dirty:
            outbox.flush(written)
        if written:
            settle(written)


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FlushScheduler] = weakref.WeakKeyDictionary()


def flush_scheduler() -> FlushScheduler:
    """The running loop's scheduler (created on first use)."""
    loop = asyncio.get_running_loop()
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = FlushScheduler(loop)
    return scheduler


def set_write_coalescing(window_s: float) -> None:
    """How long frames of back-to-back traffic may wait to leave together, for every direct outbox
    of the running loop (`WSMIGRATE_WRITE_COALESCE_MS`); 0 writes at the end of every loop turn."""
    if window_s < 0:
        raise ValueError("the write coalescing window must not be negative")
    flush_scheduler().coalesce_s = window_s


class DirectOutbox(Outbox):
    """An outbox over a `DirectTransport` (see the module docstring).

    `put` is the per-recipient cost of every fan-out, so its common case is one flag test, a
    length test and two appends; everything unusual (not started, closing, full) takes `_put_rare`.
    """

    __slots__ = ("_fast", "_frames", "_marked", "_scheduler", "_tickets", "_transport", "_writer")

    def __init__(
        self,
        transport: DirectTransport,
        close: CloseSocket,
        *,
        capacity: int = DEFAULT_OUTBOX_CAPACITY,
        on_overflow: Callable[[], None] | None = None,
        scheduler: FlushScheduler | None = None,
    ) -> None:
        super().__init__(close, capacity=capacity, on_overflow=on_overflow)
        self._transport = transport
        self._scheduler = scheduler or flush_scheduler()
        self._frames: list[bytes] = []
        self._tickets: list[DeliveryTicket] = []  # of the queued frames that have one (metrics on)
        self._fast = False  # started, open and not closing: `put` may take its short path
        self._marked = False  # on the scheduler's dirty list for this loop turn
        self._writer: asyncio.Task[None] | None = None  # waiting for the transport to drain

    def __len__(self) -> int:
        return len(self._frames)

    def _busy(self) -> bool:
        return bool(self._frames) or self._writer is not None

    def put(self, frame: OutFrame, ticket: DeliveryTicket | None = None) -> bool:
        frames = self._frames
        if not self._fast or len(frames) >= self.capacity:
            return self._put_rare(frame, ticket)
        frames.append(text_frame(frame.encode()) if type(frame) is str else frame.wire)  # type: ignore[union-attr]
        if ticket is not None:
            self._tickets.append(ticket)
        if not self._marked:
            self._marked = True
            self._scheduler.mark(self)
        return True

    def _put_rare(self, frame: OutFrame, ticket: DeliveryTicket | None) -> bool:
        if self.closed or self._close_after is not None or len(self._frames) >= self.capacity:
            return self._refuse(ticket)
        self._frames.append(text_frame(frame.encode()) if type(frame) is str else frame.wire)  # type: ignore[union-attr]
        if ticket is not None:
            self._tickets.append(ticket)
        return True  # not started yet: `start` schedules the first flush

    def _begin(self) -> None:
        self._fast = not self.closed and self._close_after is None
        self._schedule()

    def _request_close(self) -> None:
        self._fast = False
        self._schedule()

    def _schedule(self) -> None:
        self._not_idle()
        if self._started and not self._marked:
            self._marked = True
            self._scheduler.mark(self)

    def flush(self, written: list[DeliveryTicket]) -> None:
        """Write what is queued (the scheduler's callback); `written` collects the written frames'
        tickets, to be settled together once every dirty outbox is written."""
        self._marked = False
        if self._writer is not None or self.closed:
            return  # the writer task owns the queue while the transport drains
        frames = self._frames
        if frames:
            status = self._transport.write_frames(frames[0] if len(frames) == 1 else b"".join(frames))
            if status != WRITTEN:
                if status == PAUSED:
                    self._writer = asyncio.get_running_loop().create_task(self._write_when_drained())
                else:
                    self._send_failed(None, [])  # the queued tickets fail with the rest in `_drop_queued`
                return
            frames.clear()
            tickets = self._tickets
            if tickets:
                written.extend(tickets)
                tickets.clear()
        if self._close_after is not None:
            self.shutdown(*self._close_after)
        if self._idle is not None:
            self._idle.set()

    async def _write_when_drained(self) -> None:
        try:
            while self._frames and not self.closed:
                await self._transport.wait_writable()
                written: list[DeliveryTicket] = []
                self._writer = None
                self.flush(written)
                if written:
                    settle(written)
                if self._writer is not None:  # paused again: the new writer carries on
                    return
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
        if not self.closed and (self._frames or self._close_after is not None):
            self._schedule()

    def _drop_queued(self) -> list[DeliveryTicket | None]:
        self._fast = False
        tickets: list[DeliveryTicket | None] = list(self._tickets)
        self._frames.clear()
        self._tickets.clear()
        return tickets

    def _stop_writer(self) -> asyncio.Task[None] | None:
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
        return writer


def open_outbox(
    websocket: WebSocket, *, capacity: int = DEFAULT_OUTBOX_CAPACITY, on_overflow: Callable[[], None] | None = None,
) -> Outbox:
    """The fastest outbox the server under `websocket` supports (direct if it offers a transport)."""
    transport = direct_transport(websocket.scope)
    if transport is not None:
        return DirectOutbox(transport, websocket.close, capacity=capacity, on_overflow=on_overflow)
    return AsgiOutbox(websocket.send_text, websocket.close, capacity=capacity, on_overflow=on_overflow)
