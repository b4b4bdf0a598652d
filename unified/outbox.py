"""One bounded, ordered send queue per socket.

Every frame for a socket (replies, events from either delivery path) goes through its one outbox,
so frames leave in the order they were enqueued whichever path produced them. A client that cannot
keep up fills its outbox; the next frame closes it with 1013 and is counted, while every other
client keeps receiving: one slow consumer never delays the rest.

Two implementations share the lifecycle defined here (`Outbox`):

* `DirectOutbox` (`unified.outbox_direct`) writes finished frames straight to the socket's
  transport, once per socket per loop iteration. It is used whenever the server offers a
  `DirectTransport` (see `unified.transport`); `open_outbox` picks it.
* `AsgiOutbox` (below) drives ASGI `send` for servers that do not. A frame put on an idle outbox
  schedules one `call_soon` flush of that outbox; the frames put before it runs join the same
  flush. The flush drives each send coroutine synchronously: while the transport's buffer is below
  its high-water mark the whole ASGI send chain completes without suspending, so a fan-out costs
  no task wake-up per recipient. Only if a send has to wait does a writer task take over the rest
  of that send and the frames after it. The writer task is created the first time that happens,
  so an idle socket costs no task.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from wsmigrate.metrics.ledger import DeliveryTicket, RecipientOutcome
from wsmigrate.unified.protocol import CloseCode
from wsmigrate.unified.wire import Encoded

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
OutFrame = str | Encoded
DEFAULT_OUTBOX_CAPACITY = 1000
SLOW_CONSUMER_REASON = "slow consumer: send queue full"
_Step = Generator[Any, Any, None]


class Outbox:
    """What every outbox does: bounded put, overflow, close (now or after flushing), drain, stop."""

    __slots__ = ("_close", "_close_after", "_closing", "_idle", "_on_overflow", "_started", "capacity",
                 "close_code", "closed")

    def __init__(
        self, close: CloseSocket, *, capacity: int = DEFAULT_OUTBOX_CAPACITY,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self._close = close
        self.capacity = capacity
        self._on_overflow = on_overflow
        self._close_after: tuple[int, str] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None  # created by the first drain() that has to wait
        self._started = False
        self.closed = False
        self.close_code: int | None = None

    # -- what an implementation provides ---------------------------------------------------------

    def put(self, frame: OutFrame, ticket: DeliveryTicket | None = None) -> bool:
        """Enqueue `frame`; False (and the socket is being closed) when the client is too slow."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Frames queued and not yet handed to the transport."""
        raise NotImplementedError

    def _busy(self) -> bool:
        """Anything queued or being written."""
        raise NotImplementedError

    def _begin(self) -> None:
        """`start()` was called: write what was put before it."""
        raise NotImplementedError

    def _request_close(self) -> None:
        """`close_after_flush()` was called: close once what is queued has been written."""
        raise NotImplementedError

    def _drop_queued(self) -> list[DeliveryTicket | None]:
        """Forget every queued frame; returns their tickets."""
        raise NotImplementedError

    def _stop_writer(self) -> asyncio.Task[None] | None:
        """Cancel the writer task, if any, and return it."""
        raise NotImplementedError

    # -- shared lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start writing (frames put before are written now, in order)."""
        if not self._started:
            self._started = True
            self._begin()

    def _refuse(self, ticket: DeliveryTicket | None) -> bool:
        """A put that cannot be taken (closed, closing, or over capacity); always False."""
        if self.closed or self._close_after is not None:
            if ticket is not None:
                ticket.done("send_error")
            return False
        if ticket is not None:
            ticket.done("slow_consumer_drop")
        log.warning("closing a slow consumer: %d frames queued", len(self))
        if self._on_overflow is not None:
            self._on_overflow()
        self.shutdown(CloseCode.TRY_AGAIN_LATER, SLOW_CONSUMER_REASON)
        return False

    def _not_idle(self) -> None:
        if self._idle is not None:
            self._idle.clear()

    def _set_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()

    def _send_failed(self, exc: Exception | None, tickets: list[DeliveryTicket | None]) -> None:
        log.debug("send failed, discarding the outbox: %r", exc)
        for ticket in tickets:
            if ticket is not None:
                ticket.done("send_error")
        self.closed = True
        self._fail_queued("send_error")

    def shutdown(self, code: int, reason: str) -> None:
        """Stop sending, fail what is queued, and close the socket with `code` (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._fail_queued("slow_consumer_drop" if code == CloseCode.TRY_AGAIN_LATER else "send_error")
        self._stop_writer()
        self._closing = asyncio.get_running_loop().create_task(self._close_quietly(code, reason))

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close with `code` once what is already queued (say, a final error frame) is written."""
        if self.closed or self._close_after is not None:
            return
        self._close_after = (code, reason)
        self._not_idle()
        self._request_close()

    async def _close_quietly(self, code: int, reason: str) -> None:
        try:
            await self._close(code, reason)
        except asyncio.CancelledError:
            log.debug("close(%d) cancelled", code)
        except Exception as exc:  # noqa: BLE001 - the peer is gone, whatever the server stack raises for it
            log.debug("close(%d) on a finished socket: %r", code, exc)

    def _fail_queued(self, outcome: str) -> None:
        self._set_idle()
        failed: RecipientOutcome = "slow_consumer_drop" if outcome == "slow_consumer_drop" else "send_error"
        for ticket in self._drop_queued():
            if ticket is not None:
                ticket.done(failed)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until everything queued has been written."""
        if self.closed or not self._busy():
            return
        if self._idle is None:
            self._idle = asyncio.Event()
        else:
            self._idle.clear()  # busy right now, whatever an earlier flush left in it
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.info("outbox not drained within %.1fs; %d frames dropped at close", timeout, len(self))

    async def finish(self, timeout: float) -> None:
        """End the session: let a requested close (after flush) happen, bounded, then stop."""
        if self._close_after is not None and not self.closed:
            await self.drain(timeout)
        if self._closing is not None and not self._closing.done():
            await asyncio.wait([self._closing], timeout=timeout)
        await self.stop()
        self._on_overflow = None  # a finished outbox never overflows; this also frees its owner

    async def stop(self) -> None:
        """Discard pending frames and end the writer (the socket is already closed)."""
        self.closed = True
        self._fail_queued("send_error")
        task = self._stop_writer()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)


@types.coroutine
def _finish(step: _Step, pending: Any) -> _Step:
    """Await the rest of a send that suspended on `pending` outside the writer task.

    Like `await` on the original coroutine: what the task sends or throws in (its wake-up,
    a cancellation) is forwarded, and the send's own exceptions propagate.
    """
    while True:
        try:
            value = yield pending
        except GeneratorExit:
            step.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - forwarded exactly where the await would have taken it
            try:
                pending = step.throw(exc)
            except StopIteration:
                return
        else:
            try:
                pending = step.send(value)
            except StopIteration:
                return


class AsgiOutbox(Outbox):
    """An outbox that writes through ASGI `send_text` (see the module docstring)."""

    __slots__ = ("_flush", "_queue", "_send", "_stalled", "_task", "_wakeup", "_writing")

    def __init__(
        self,
        send: SendText,
        close: CloseSocket,
        *,
        capacity: int = DEFAULT_OUTBOX_CAPACITY,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(close, capacity=capacity, on_overflow=on_overflow)
        self._send = send
        self._queue: deque[tuple[str | None, DeliveryTicket | None]] = deque()
        self._wakeup: asyncio.Event | None = None  # created with the writer task
        self._task: asyncio.Task[None] | None = None
        self._writing = False  # a frame is being written by the writer task
        self._stalled: tuple[_Step, Any, DeliveryTicket | None] | None = None  # a started send that had to wait
        self._flush: asyncio.Handle | None = None  # a scheduled `_flush_queue` (it owns the queue meanwhile)

    def __len__(self) -> int:
        return len(self._queue)

    def _busy(self) -> bool:
        return bool(self._queue) or self._writing or self._stalled is not None

    def _begin(self) -> None:
        if self._queue:
            self._wake_writer()

    def _wake_writer(self) -> None:
        """Something is queued or stalled: make sure the writer task exists and runs."""
        self._not_idle()
        if not self._started:
            return
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._wakeup is not None
        self._wakeup.set()

    def put(self, frame: OutFrame, ticket: DeliveryTicket | None = None) -> bool:
        if self.closed or self._close_after is not None or len(self._queue) >= self.capacity:
            return self._refuse(ticket)
        text = frame if type(frame) is str else frame.text  # type: ignore[union-attr]
        idle = self._flush is None and not self._busy()
        self._queue.append((text, ticket))
        if idle and self._started:
            self._not_idle()
            self._flush = asyncio.get_running_loop().call_soon(self._flush_queue)
        elif self._flush is None:
            self._wake_writer()
        return True

    def _flush_queue(self) -> None:
        """The flush path (module docstring): write what is queued now, or hand over to the writer."""
        self._flush = None
        queue = self._queue
        while queue and not self.closed:
            text, ticket = queue.popleft()
            assert text is not None  # close_after_flush hands the queue to the writer task
            step = self._send(text).__await__()
            try:
                pending = step.send(None)
            except StopIteration:
                if ticket is not None:
                    ticket.done("sent")
                continue
            except Exception as exc:  # noqa: BLE001 - the socket is gone, whatever the server stack raised
                self._send_failed(exc, [ticket])
                return
            self._stalled = (step, pending, ticket)
            self._wake_writer()
            return
        if not queue:
            self._set_idle()

    def _request_close(self) -> None:
        self._queue.append((None, None))
        self._cancel_flush()  # the writer task takes the queue over, in order
        self._wake_writer()

    def _cancel_flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    def _drop_queued(self) -> list[DeliveryTicket | None]:
        self._cancel_flush()
        tickets = [ticket for _, ticket in self._queue]
        self._queue.clear()
        return tickets

    def _stop_writer(self) -> asyncio.Task[None] | None:
        if self._task is not None:
            self._task.cancel()
        return self._task

    async def _run(self) -> None:
        queue = self._queue
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            while not queue and self._stalled is None:
                wakeup.clear()
                await wakeup.wait()
            sending: Awaitable[None]
            if self._stalled is not None:  # first finish the send the flush started
                step, pending, ticket = self._stalled
                self._stalled = None
                sending = _finish(step, pending)
            else:
                text, ticket = queue.popleft()
                if text is None:
                    assert self._close_after is not None
                    self.shutdown(*self._close_after)
                    return
                sending = self._send(text)
            self._writing = True
            try:
                await sending
            except Exception as exc:  # noqa: BLE001 - the socket is gone, whatever the server stack raised
                self._send_failed(exc, [ticket])
                return
            finally:
                self._writing = False
            if ticket is not None:
                ticket.done("sent")
            if not queue:
                self._set_idle()
