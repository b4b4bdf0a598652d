"""One bounded, ordered send queue per socket, drained by a single writer task.

Every frame for a socket (replies, events from either delivery path) goes through its one outbox,
so frames leave in the order they were enqueued whichever path produced them. A client that cannot
keep up fills its outbox; the next frame closes it with 1013 and is counted, while every other
client keeps receiving: one slow consumer never delays the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from metrics.ledger import DeliveryTicket
from unified.protocol import CloseCode

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
DEFAULT_OUTBOX_CAPACITY = 1000
SLOW_CONSUMER_REASON = "slow consumer: send queue full"


class Outbox:
    """A bounded FIFO of text frames for one socket."""

    def __init__(
        self,
        send: SendText,
        close: CloseSocket,
        *,
        capacity: int = DEFAULT_OUTBOX_CAPACITY,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._close = close
        self.capacity = capacity
        self._on_overflow = on_overflow
        self._queue: deque[tuple[str | None, DeliveryTicket | None]] = deque()
        self._close_after: tuple[int, str] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.close_code: int | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, text: str, ticket: DeliveryTicket | None = None) -> bool:
        """Enqueue `text`; False (and the socket is being closed) when the client is too slow."""
        if self.closed or self._close_after is not None:
            if ticket is not None:
                ticket.done("send_error")
            return False
        if len(self._queue) >= self.capacity:
            if ticket is not None:
                ticket.done("slow_consumer_drop")
            self._overflow()
            return False
        self._queue.append((text, ticket))
        self._idle.clear()
        self._wakeup.set()
        return True

    def _overflow(self) -> None:
        log.warning("closing a slow consumer: %d frames queued", len(self._queue))
        if self._on_overflow is not None:
            self._on_overflow()
        self.shutdown(CloseCode.TRY_AGAIN_LATER, SLOW_CONSUMER_REASON)

    def shutdown(self, code: int, reason: str) -> None:
        """Stop sending, fail what is queued, and close the socket with `code` (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._fail_queued("slow_consumer_drop" if code == CloseCode.TRY_AGAIN_LATER else "send_error")
        if self._task is not None:
            self._task.cancel()
        self._closing = asyncio.get_running_loop().create_task(self._close_quietly(code, reason))

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close with `code` once what is already queued (say, a final error frame) is written."""
        if self.closed or self._close_after is not None:
            return
        self._close_after = (code, reason)
        self._queue.append((None, None))
        self._idle.clear()
        self._wakeup.set()

    async def _close_quietly(self, code: int, reason: str) -> None:
        try:
            await self._close(code, reason)
        except (RuntimeError, OSError, asyncio.CancelledError) as exc:
            log.debug("close(%d) on a finished socket: %r", code, exc)

    def _fail_queued(self, outcome: str) -> None:
        self._idle.set()
        while self._queue:
            _, ticket = self._queue.popleft()
            if ticket is not None:
                ticket.done("slow_consumer_drop" if outcome == "slow_consumer_drop" else "send_error")

    async def _run(self) -> None:
        queue = self._queue
        while True:
            while not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            text, ticket = queue.popleft()
            if text is None:
                assert self._close_after is not None
                self.shutdown(*self._close_after)
                return
            try:
                await self._send(text)
            except Exception as exc:  # noqa: BLE001 - the socket is gone, whatever the server stack raised
                log.debug("send failed, discarding the outbox: %r", exc)
                if ticket is not None:
                    ticket.done("send_error")
                self.closed = True
                self._fail_queued("send_error")
                self._idle.set()
                return
            if ticket is not None:
                ticket.done("sent")
            if not queue:
                self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until everything queued has been written."""
        if self.closed:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.info("outbox not drained within %.1fs; %d frames dropped at close", timeout, len(self._queue))

    async def finish(self, timeout: float) -> None:
        """End the session: let a requested close (after flush) happen, bounded, then stop."""
        waiting = [t for t in (self._task if self._close_after else None, self._closing) if t is not None]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)
        if self._closing is not None and not self._closing.done():
            await asyncio.wait([self._closing], timeout=timeout)
        await self.stop()

    async def stop(self) -> None:
        """Discard pending frames and end the writer (the socket is already closed)."""
        self.closed = True
        self._fail_queued("send_error")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
