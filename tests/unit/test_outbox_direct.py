"""DirectOutbox without sockets: a transport that records writes and can be paused or closed.

The transport is the seam the server implements (`unified.transport.DirectTransport`); the
in-memory one here plays its three answers (written, paused, closed) deterministically.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import CollectorRegistry

from tests.unit.test_wire import decode
from wsmigrate.metrics import WsMetrics
from wsmigrate.metrics.ledger import PathLedger
from wsmigrate.unified.outbox_direct import BUSY_GAP_S, DirectOutbox, FlushScheduler
from wsmigrate.unified.protocol import CloseCode
from wsmigrate.unified.transport import CLOSED, PAUSED, WRITTEN
from wsmigrate.unified.wire import EncodedFrame


class MemoryTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.wrote = asyncio.Event()  # set by every write
        self.state = WRITTEN
        self._drained = asyncio.Event()
        self._drained.set()

    def write_frames(self, data: bytes) -> int:
        if self.state != WRITTEN:
            return self.state
        self.writes.append(data)
        self.wrote.set()
        return WRITTEN

    async def wait_writable(self) -> None:
        await self._drained.wait()

    def pause(self) -> None:
        self.state = PAUSED
        self._drained.clear()

    def resume(self) -> None:
        self.state = WRITTEN
        self._drained.set()

    def texts(self) -> list[str]:
        return [f.data.decode() for f in decode(b"".join(self.writes))]


class Closer:
    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    async def __call__(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def turn() -> None:
    """Let the loop run the scheduled flush (and the close task it may start)."""
    for _ in range(3):
        await asyncio.sleep(0)


def per_turn() -> FlushScheduler:
    """A scheduler that writes at the end of every loop turn (`WSMIGRATE_WRITE_COALESCE_MS=0`)."""
    return FlushScheduler(asyncio.get_running_loop(), coalesce_s=0)


@pytest.fixture
def ledger() -> PathLedger:
    return PathLedger(WsMetrics(CollectorRegistry(), event_types=["stream_chunk"]), "unified")


def sample(ledger: PathLedger, name: str, **labels: str) -> float:
    assert ledger.metrics is not None
    value = ledger.metrics.registry.get_sample_value(name, {"event_type": "stream_chunk", "path": "unified", **labels})
    return value or 0.0


async def test_frames_of_one_loop_turn_leave_in_one_write_in_order() -> None:
    transport = MemoryTransport()
    outbox = DirectOutbox(transport, Closer(), scheduler=per_turn())
    outbox.start()
    for i in range(5):
        assert outbox.put(EncodedFrame(f'{{"n":{i}}}'))
    outbox.put('{"type":"reply"}')  # a plain text reply joins the same write, in order
    assert transport.writes == []  # nothing is written inside the fan-out itself
    await turn()
    assert len(transport.writes) == 1
    assert transport.texts() == [*(f'{{"n":{i}}}' for i in range(5)), '{"type":"reply"}']


async def test_one_encoded_frame_is_shared_by_every_outbox() -> None:
    scheduler = per_turn()
    transports = [MemoryTransport() for _ in range(3)]
    outboxes = [DirectOutbox(t, Closer(), scheduler=scheduler) for t in transports]
    frame = EncodedFrame('{"type":"stream_chunk"}')
    for outbox in outboxes:
        outbox.start()
        outbox.put(frame)
    await turn()
    assert all(t.writes == [frame.wire] for t in transports)
    assert all(t.writes[0] is frame.wire for t in transports)  # the same bytes object, no copy


async def test_a_paused_transport_keeps_frames_until_it_drains() -> None:
    transport = MemoryTransport()
    outbox = DirectOutbox(transport, Closer(), scheduler=per_turn())
    outbox.start()
    transport.pause()
    outbox.put(EncodedFrame("1"))
    await turn()
    outbox.put(EncodedFrame("2"))
    await turn()
    assert transport.writes == []
    assert len(outbox) == 2
    transport.resume()
    await outbox.drain(1.0)
    assert transport.texts() == ["1", "2"]
    assert len(outbox) == 0
    outbox.put(EncodedFrame("3"))  # back on the fast path afterwards
    await turn()
    assert transport.texts() == ["1", "2", "3"]


async def test_a_client_that_stops_reading_is_closed_as_slow_consumer(ledger: PathLedger) -> None:
    transport, closer = MemoryTransport(), Closer()
    overflowed: list[bool] = []
    outbox = DirectOutbox(transport, closer, capacity=3, on_overflow=lambda: overflowed.append(True),
                          scheduler=per_turn())
    outbox.start()
    transport.pause()
    tickets = [ledger.open("stream_chunk", 0, 1) for _ in range(4)]
    assert [outbox.put(EncodedFrame(str(i)), tickets[i]) for i in range(4)] == [True, True, True, False]
    await turn()
    assert outbox.closed
    assert overflowed == [True]
    assert closer.closed == (CloseCode.TRY_AGAIN_LATER, "slow consumer: send queue full")
    assert sample(ledger, "wsmigrate_recipient_deliveries_total", outcome="slow_consumer_drop") == 4
    assert sample(ledger, "wsmigrate_path_events_completed_total", outcome="dropped") == 4
    assert sample(ledger, "wsmigrate_path_events_inflight") == 0


async def test_a_closed_transport_fails_what_was_queued(ledger: PathLedger) -> None:
    transport = MemoryTransport()
    outbox = DirectOutbox(transport, Closer(), scheduler=per_turn())
    outbox.start()
    ticket = ledger.open("stream_chunk", 0, 2)
    outbox.put(EncodedFrame("a"), ticket)
    outbox.put(EncodedFrame("b"), ticket)
    transport.state = CLOSED
    await turn()
    assert outbox.closed
    assert not outbox.put(EncodedFrame("c"))
    assert sample(ledger, "wsmigrate_recipient_deliveries_total", outcome="send_error") == 2
    assert sample(ledger, "wsmigrate_path_events_completed_total", outcome="failed") == 1


async def test_close_after_flush_writes_what_is_queued_then_closes() -> None:
    transport, closer = MemoryTransport(), Closer()
    outbox = DirectOutbox(transport, closer, scheduler=per_turn())
    outbox.start()
    outbox.put('{"type":"error"}')
    outbox.close_after_flush(CloseCode.POLICY_VIOLATION, "too many bad frames")
    assert not outbox.put('{"type":"late"}')  # nothing is taken after the close was asked for
    await outbox.finish(1.0)
    assert transport.texts() == ['{"type":"error"}']
    assert closer.closed == (CloseCode.POLICY_VIOLATION, "too many bad frames")


async def test_frames_put_before_start_wait_for_it() -> None:
    transport = MemoryTransport()
    outbox = DirectOutbox(transport, Closer(), scheduler=per_turn())
    outbox.put('{"first":1}')
    await turn()
    assert transport.writes == []
    outbox.start()
    await turn()
    assert transport.texts() == ['{"first":1}']


async def test_written_frames_settle_their_tickets_once_per_turn(ledger: PathLedger) -> None:
    scheduler = per_turn()
    transports = [MemoryTransport() for _ in range(10)]
    outboxes = [DirectOutbox(t, Closer(), scheduler=scheduler) for t in transports]
    for outbox in outboxes:
        outbox.start()
    for n in range(3):
        ticket = ledger.open("stream_chunk", 0, len(outboxes))
        for outbox in outboxes:
            outbox.put(EncodedFrame(str(n)), ticket)
    await turn()
    assert sample(ledger, "wsmigrate_recipient_deliveries_total", outcome="sent") == 30
    assert sample(ledger, "wsmigrate_path_events_completed_total", outcome="delivered") == 3
    assert sample(ledger, "wsmigrate_path_events_accepted_total") == 3
    assert sample(ledger, "wsmigrate_path_events_inflight") == 0
    assert ledger.metrics is not None
    count = ledger.metrics.registry.get_sample_value("wsmigrate_delivery_latency_seconds_count", {"path": "unified"})
    assert count == 30  # one observation per recipient, even though they were tallied together


# -- coalescing under back-to-back traffic (WSMIGRATE_WRITE_COALESCE_MS) ----------------------------

WINDOW_S = 0.05  # far longer than a few loop turns, so "not yet written" cannot be a race


class StoppedClock:
    """The scheduler's clock: stands still (every frame is back to back) until moved on."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def written(transport: MemoryTransport, count: int, timeout: float = 2.0) -> None:
    """Wait (bounded) until `transport` has `count` writes: the window's timer fired."""
    async with asyncio.timeout(timeout):
        while len(transport.writes) < count:
            transport.wrote.clear()
            await transport.wrote.wait()


async def test_back_to_back_frames_wait_for_the_window_and_leave_in_one_write() -> None:
    clock = StoppedClock()
    scheduler = FlushScheduler(asyncio.get_running_loop(), coalesce_s=WINDOW_S, clock=clock)
    transport = MemoryTransport()
    outbox = DirectOutbox(transport, Closer(), scheduler=scheduler)
    outbox.start()
    outbox.put(EncodedFrame("a"))  # nothing was flushed before: it leaves at the end of this turn
    await turn()
    assert transport.texts() == ["a"]
    loop = asyncio.get_running_loop()
    held_from = loop.time()
    for text in "bcd":  # right after that flush (the clock stands still), one per loop turn
        outbox.put(EncodedFrame(text))
        await turn()
    assert len(transport.writes) == 1, "a back-to-back frame left before the window"
    await written(transport, 2)
    assert loop.time() - held_from >= WINDOW_S * 0.9  # the loop's timer granularity
    assert transport.writes[1] == b"".join(EncodedFrame(t).wire for t in "bcd")  # one write, in order


async def test_a_frame_after_a_quiet_moment_leaves_at_the_end_of_its_turn() -> None:
    clock = StoppedClock()
    scheduler = FlushScheduler(asyncio.get_running_loop(), coalesce_s=WINDOW_S, clock=clock)
    transport = MemoryTransport()
    outbox = DirectOutbox(transport, Closer(), scheduler=scheduler)
    outbox.start()
    for n, text in enumerate("abc", start=1):
        clock.now += BUSY_GAP_S  # as long as the busy gap since the last flush: not back to back
        outbox.put(EncodedFrame(text))
        await turn()
        assert len(transport.writes) == n
    assert transport.texts() == ["a", "b", "c"]


async def test_a_zero_window_writes_every_turn_however_busy() -> None:
    scheduler = FlushScheduler(asyncio.get_running_loop(), coalesce_s=0, clock=StoppedClock())
    transport = MemoryTransport()
    outbox = DirectOutbox(transport, Closer(), scheduler=scheduler)
    outbox.start()
    for n, text in enumerate("abc", start=1):
        outbox.put(EncodedFrame(text))
        await turn()
        assert len(transport.writes) == n


@pytest.mark.parametrize("seed", range(5))
async def test_coalesced_writes_carry_the_same_bytes_and_settle_the_same_tickets_as_per_turn_writes(
    seed: int,
) -> None:
    """The fast path pinned to the plain one: a random interleaving of puts to several sockets,
    loop turns and quiet moments, through a coalescing scheduler and a per-turn one."""
    rng = random.Random(seed)
    script = [(rng.randrange(4), rng.random() < 0.2, rng.random() < 0.1) for _ in range(300)]
    results, writes = [], []
    for coalesce_s in (0.0, 0.002):
        clock = StoppedClock()
        metrics = PathLedger(WsMetrics(CollectorRegistry(), event_types=["stream_chunk"]), "unified")
        scheduler = FlushScheduler(asyncio.get_running_loop(), coalesce_s=coalesce_s, clock=clock)
        transports = [MemoryTransport() for _ in range(4)]
        outboxes = [DirectOutbox(t, Closer(), scheduler=scheduler) for t in transports]
        for outbox in outboxes:
            outbox.start()
        for n, (socket, turn_ends, quiet) in enumerate(script):
            if quiet:
                clock.now += 1.0
            outboxes[socket].put(EncodedFrame(f'{{"n":{n}}}'), metrics.open("stream_chunk", 0, 1))
            if turn_ends:
                await asyncio.sleep(0)
        for outbox in outboxes:
            await outbox.drain(2.0)
        results.append(([b"".join(t.writes) for t in transports],
                         sample(metrics, "wsmigrate_recipient_deliveries_total", outcome="sent"),
                         sample(metrics, "wsmigrate_path_events_completed_total", outcome="delivered"),
                         sample(metrics, "wsmigrate_path_events_inflight")))
        writes.append(sum(len(t.writes) for t in transports))
    assert results[0] == results[1]
    assert writes[1] < writes[0] / 2, "the coalescing run did not coalesce"
    assert results[0][1:] == (300, 300, 0)


def test_a_negative_window_is_refused() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="negative"):
            FlushScheduler(loop, coalesce_s=-0.001)
    finally:
        loop.close()
