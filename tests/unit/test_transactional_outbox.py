"""The transactional outbox on a real SQLite file and a running in-memory bus: a committed change is
announced exactly once, a rolled-back one never, and a bus that cannot take events delays them
without failing the application or reordering them.

The bus being down is a backend that refuses appends while `down` is set (what the Redis backend
does when Redis is unreachable: `BusUnavailableError`); tests/integration/test_outbox_redis.py
does the same against a real redis-server that is stopped and started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import ForeignKey, String, create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from tests.contract.helpers import Delivered
from wsmigrate.metrics import WsMetrics
from wsmigrate.unified import EventBus, EventCatalog, MemoryBackend
from wsmigrate.unified.errors import BusUnavailableError
from wsmigrate.unified.events import Event
from wsmigrate.unified.outbox_relay import OutboxRelay
from wsmigrate.unified.publication import Ingress
from wsmigrate.unified.transactional_outbox import TransactionalOutbox

TIMEOUT_S = 10.0


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(100))


class Line(Base):
    __tablename__ = "lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))


def catalog() -> EventCatalog:
    declared = EventCatalog(topics=["invoice:{invoice_id:int}"])
    declared.event("invoice_issued", topics=["invoice:{id}"])
    return declared


class SwitchableBackend(MemoryBackend):
    """The in-memory backend, unreachable while `down` is set."""

    down = False

    async def append(self, event: Event, topics: Sequence[str], ingress: Ingress) -> bool:
        if self.down:
            raise BusUnavailableError("the bus is down (test)")
        return await super().append(event, topics, ingress)


class Seen(Delivered):
    """Every publication the bus delivers (a bus sink), and a way to wait for the n-th."""

    @property
    def invoice_ids(self) -> list[int]:
        return [p.event.data["id"] for p in self.publications]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


class World:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.backend = SwitchableBackend()
        self.registry = CollectorRegistry()
        self.metrics = WsMetrics(self.registry, event_types=["invoice_issued"])
        self.bus = EventBus(self.backend, catalog=catalog())
        self.seen = Seen()
        self.bus.attach(self.seen)
        self.outbox = TransactionalOutbox(engine)
        self.relay = self.new_relay()

    def new_relay(self) -> OutboxRelay:
        return OutboxRelay(self.outbox, self.bus, metrics=self.metrics, sweep_interval_s=0.05, grace_s=0.2,
                           retry_max_s=0.1)

    def issue(self, customer: str, *, commit: bool = True) -> Event:
        """A change and its event in one transaction (in a worker thread, as a sync route runs)."""
        with self.sessions() as session:
            invoice = Invoice(customer=customer)
            session.add(invoice)
            session.flush()
            event = self.bus.new_event("invoice_issued", {"id": invoice.id, "customer": customer})
            self.outbox.stage(session, event)
            if commit:
                session.commit()
            else:
                session.rollback()
        return event

    def rows(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(self.outbox.table)).scalar_one())

    def invoices(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Invoice)) or 0)

    async def drained(self) -> None:
        """Until a sweep leaves the table empty (rows are deleted just after their publish)."""
        async with asyncio.timeout(TIMEOUT_S):
            while (await self.relay.after_sweep()).rows:
                pass

    def counted(self, outcome: str) -> float:
        return self.registry.get_sample_value("wsmigrate_outbox_events_total", {"outcome": outcome}) or 0.0


@pytest.fixture
async def world(engine: Engine) -> AsyncIterator[World]:
    world = World(engine)
    await world.bus.start()
    await world.relay.start()
    yield world
    await world.relay.stop()
    await world.bus.stop()


async def test_a_committed_change_is_announced_once_and_its_row_removed(world: World) -> None:
    event = await asyncio.to_thread(world.issue, "acme")
    await world.seen.wait_for(1)
    assert [p.event.event_id for p in world.seen.publications] == [event.event_id]
    assert world.seen.publications[0].ingress.origin == "outbox"
    assert await world.outbox.published([event.event_id], TIMEOUT_S)
    assert await asyncio.to_thread(world.rows) == 0
    assert (world.counted("committed"), world.counted("published")) == (1, 1)


async def test_a_rolled_back_change_is_never_announced(world: World) -> None:
    await asyncio.to_thread(world.issue, "ghost", commit=False)
    kept = await asyncio.to_thread(world.issue, "kept")
    await world.seen.wait_for(1)
    assert [p.event.event_id for p in world.seen.publications] == [kept.event_id]
    assert await world.outbox.published([kept.event_id], TIMEOUT_S)
    assert await asyncio.to_thread(world.rows) == 0  # the ghost's row went with its transaction


async def test_a_rolled_back_savepoint_takes_its_event_with_it(world: World) -> None:
    def change() -> tuple[Event, Event]:
        with world.sessions() as session:
            outer = Invoice(customer="outer")
            session.add(outer)
            session.flush()
            kept = world.bus.new_event("invoice_issued", {"id": outer.id, "customer": "outer"})
            world.outbox.stage(session, kept)
            savepoint = session.begin_nested()
            inner = Invoice(customer="inner")
            session.add(inner)
            session.flush()
            dropped = world.bus.new_event("invoice_issued", {"id": inner.id, "customer": "inner"})
            world.outbox.stage(session, dropped)
            savepoint.rollback()
            session.commit()
            return kept, dropped

    kept, _ = await asyncio.to_thread(change)
    after = await asyncio.to_thread(world.issue, "after")
    await world.seen.wait_for(2)
    assert [p.event.event_id for p in world.seen.publications] == [kept.event_id, after.event_id]
    assert await asyncio.to_thread(world.invoices) == 2


async def test_while_the_bus_is_down_commits_succeed_and_their_events_follow_in_order_once_it_is_back(
    world: World,
) -> None:
    world.backend.down = True
    first = await asyncio.to_thread(world.issue, "one")
    assert not await world.outbox.published([first.event_id], TIMEOUT_S)  # deferred, not lost
    more = [await asyncio.to_thread(world.issue, f"n{i}") for i in range(5)]
    assert await asyncio.to_thread(world.invoices) == 6  # every change is stored
    assert await asyncio.to_thread(world.rows) == 6
    assert world.counted("publish_failed") >= 1
    assert world.seen.publications == []

    world.backend.down = False
    late = await asyncio.to_thread(world.issue, "after the outage")  # must not overtake the backlog
    await world.seen.wait_for(7)
    assert [p.event.event_id for p in world.seen.publications] == [e.event_id for e in [first, *more, late]]
    assert world.seen.invoice_ids == sorted(world.seen.invoice_ids)
    await world.drained()
    async with asyncio.timeout(TIMEOUT_S):
        while world.relay.backlogged:  # the sweep that found the table empty ends the backlog
            await world.relay.after_sweep()
    again = await asyncio.to_thread(world.issue, "direct again")
    assert await world.outbox.published([again.event_id], TIMEOUT_S)


async def test_rows_left_by_a_process_that_died_are_published_by_the_next_start(world: World) -> None:
    await world.relay.stop()  # the process is gone: commits only write rows
    orphans = [await asyncio.to_thread(world.issue, f"o{i}") for i in range(3)]
    assert world.seen.publications == []
    world.relay = world.new_relay()
    await world.relay.start()
    await world.seen.wait_for(3)
    assert [p.event.event_id for p in world.seen.publications] == [e.event_id for e in orphans]


async def test_an_event_published_but_not_deleted_is_published_again_and_suppressed(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker that dies between the publish and the delete leaves the row: the next sweep
    publishes it again, and the bus's event_id dedup keeps clients at one delivery."""
    removed: list[Sequence[int]] = []
    original = world.outbox.remove

    def remove_fails_once(row_ids: Sequence[int]) -> None:
        if not removed:
            removed.append(row_ids)
            from sqlalchemy.exc import OperationalError
            raise OperationalError("DELETE", {}, Exception("database is locked (test)"))
        original(row_ids)

    monkeypatch.setattr(world.outbox, "remove", remove_fails_once)
    event = await asyncio.to_thread(world.issue, "twice?")
    await world.seen.wait_for(1)
    await world.drained()
    assert world.counted("duplicate") == 1
    assert world.counted("store_failed") == 1
    assert [p.event.event_id for p in world.seen.publications] == [event.event_id]


async def test_the_backlog_gauges_show_what_waits_and_for_how_long(world: World) -> None:
    world.backend.down = True
    await asyncio.to_thread(world.issue, "waiting")
    async with asyncio.timeout(TIMEOUT_S):
        while (await world.relay.after_sweep()).rows == 0:
            pass
    assert world.registry.get_sample_value("wsmigrate_outbox_backlog") == 1
    assert (world.registry.get_sample_value("wsmigrate_outbox_oldest_age_seconds") or 0) >= 0
    world.backend.down = False
    await world.seen.wait_for(1)
    await world.drained()
    assert world.registry.get_sample_value("wsmigrate_outbox_backlog") == 0


def test_a_session_that_stages_without_a_relay_keeps_the_row_for_later(engine: Engine) -> None:
    outbox = TransactionalOutbox(engine)
    outbox.create_table()
    with Session(engine) as session:
        session.add(Invoice(customer="x"))
        session.flush()
        outbox.stage(session, catalog().create("invoice_issued", {"id": 1}))
        session.commit()
    [row] = outbox.pending(10)
    assert row.event.data == {"id": 1}


async def test_the_decorator_commits_the_change_with_its_event(world: World, caplog: pytest.LogCaptureFixture) -> None:
    from wsmigrate.unified.decorator import publish_event

    @publish_event("invoice_issued", bus=world.bus, outbox=world.outbox, session="db")
    def issue(customer: str, db: Session) -> dict[str, Any]:
        invoice = Invoice(customer=customer)
        db.add(invoice)
        db.flush()
        return {"id": invoice.id, "customer": customer}

    @publish_event("invoice_issued", bus=world.bus, outbox=world.outbox, session="db")
    def fails(db: Session) -> dict[str, Any]:
        db.add(Invoice(customer="never"))
        db.flush()
        raise LookupError("no such customer")

    @publish_event("invoice_issued", bus=world.bus, outbox=world.outbox, session="db")
    def commits_itself(db: Session) -> dict[str, Any]:
        invoice = Invoice(customer="eager")
        db.add(invoice)
        db.commit()
        return {"id": invoice.id, "customer": "eager"}

    def call(func: Any, *args: Any) -> Any:
        with world.sessions() as db:
            return func(*args, db=db)

    result = await asyncio.to_thread(call, issue, "acme")
    # the decorator waited for the relay: published before the call returned
    assert [p.event.data for p in world.seen.publications] == [result]
    with pytest.raises(LookupError):
        await asyncio.to_thread(call, fails)
    with caplog.at_level(logging.WARNING, logger="wsmigrate.unified.decorator_outbox"):
        eager = await asyncio.to_thread(call, commits_itself)
    assert "not atomic" in caplog.text  # said once, loudly; the event is still announced
    assert [p.event.data for p in world.seen.publications] == [result, eager]
    assert await asyncio.to_thread(world.invoices) == 2
