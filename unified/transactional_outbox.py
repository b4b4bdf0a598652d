"""The transactional outbox: an event is committed in the same database transaction as its change.

Why: publishing after the commit leaves a window. If the process dies between the commit and the
publish, or the bus is unreachable at that moment, the change is stored and never announced, and
an application that answers 500 invites a retry that stores it twice. With the outbox, the event
is a row of `wsmigrate_outbox` written by the application's own transaction: either the change
and its event are both committed or neither is. Publishing is then a separate, retryable step
(`wsmigrate.unified.outbox_relay.OutboxRelay`), made safe to repeat by the bus's `event_id`
dedup, so every committed change is announced exactly once.

(Not to be confused with `wsmigrate.unified.outbox.Outbox`, a socket's bounded send queue.)

How an event flows:

1. `TransactionalOutbox.stage(session, event)` inserts the row in the session's transaction and
   remembers the event on the session. `@publish_event(..., session="db")` does this for a route
   and commits (`wsmigrate.unified.decorator`).
2. On commit, the session's `after_commit` hook hands the staged events to the relay (the fast
   path: published within milliseconds, in commit order). A rollback, or the rollback of the
   SAVEPOINT that staged them, forgets them: nothing is published for a change that is not stored.
3. The relay publishes, then deletes the rows. If the bus is down it leaves them; its sweep reads
   the table in id order and publishes them when the bus is back, including rows a dead worker
   left behind. A row published but not yet deleted when a worker dies is published again and
   suppressed by `event_id` (the Redis bus remembers ids for its dedup window, 5 minutes).

Hooks registered here, in one place: `after_commit`, `after_soft_rollback` and
`after_transaction_end` on each session that stages an event (once per session, `watch`); the
relay registers itself with `attach`.

The table is created by `create_table()` (the relay calls it at start); an application that
manages its schema with migrations adds `outbox.table` (SQLAlchemy Core) to them instead. Works
with a synchronous SQLAlchemy 2 `Session` on any database SQLAlchemy supports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, delete, func, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, SessionTransaction

from wsmigrate.unified.errors import UnifiedError
from wsmigrate.unified.events import Event, now_ms

log = logging.getLogger(__name__)

DEFAULT_TABLE = "wsmigrate_outbox"
_STAGED = "wsmigrate.outbox.staged"  # session.info: [(row id, event, transaction that staged it)]
_WATCHED = "wsmigrate.outbox.watched"  # session.info: the hooks are registered on this session
COMMITS = "wsmigrate.outbox.commits"  # session.info: commits seen on a watched session


class OutboxError(UnifiedError):
    """The transactional outbox was used wrongly (no outbox configured, no session given)."""


@dataclass(frozen=True, slots=True)
class StagedEvent:
    """An event whose row is committed in the outbox table (`row_id`), waiting to be published."""

    row_id: int
    event: Event


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits in the table: how many rows, and the commit time (ms) of the oldest."""

    rows: int
    oldest_ms: int | None


class Relay(Protocol):
    """What publishes committed events (`wsmigrate.unified.outbox_relay.OutboxRelay`)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    def committed(self, staged: list[StagedEvent]) -> None: ...

    async def wait_published(self, event_ids: Sequence[str], timeout_s: float) -> bool: ...


class TransactionalOutbox:
    """The outbox table of one database (see module docstring)."""

    def __init__(self, engine: Engine, *, table_name: str = DEFAULT_TABLE, metadata: MetaData | None = None) -> None:
        self.engine = engine
        self.metadata = metadata if metadata is not None else MetaData()
        self.table = Table(
            table_name, self.metadata,
            # BIGINT ids, except on SQLite, where only INTEGER PRIMARY KEY autoincrements
            Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
            Column("event_id", String(64), nullable=False, unique=True),
            Column("event", Text, nullable=False),  # the Event as JSON, exactly as it will be published
            Column("created_ms", BigInteger, nullable=False),
        )
        self._relay: Relay | None = None

    # -- the application's side -------------------------------------------------------------------

    def stage(self, session: Session, event: Event) -> None:
        """Write `event` in `session`'s transaction; it is published once that transaction commits."""
        if not isinstance(session, Session):
            raise OutboxError(f"stage() needs a SQLAlchemy Session, got {type(session).__name__}")
        watch(session)
        result = cast(CursorResult[Any], session.execute(insert(self.table).values(
            event_id=event.event_id, event=event.model_dump_json(), created_ms=now_ms())))
        key = result.inserted_primary_key
        if key is None:  # pragma: no cover - an INSERT with an autoincrement key always has one
            raise OutboxError("the outbox INSERT returned no row id")
        row_id = int(key[0])
        transaction = session.get_nested_transaction() or session.get_transaction()
        session.info.setdefault(_STAGED, []).append((self, StagedEvent(row_id, event), transaction))

    def attach(self, relay: Relay | None) -> None:
        """`relay.committed(staged)` is called (in the committing thread) with each commit's events."""
        self._relay = relay

    def committed(self, staged: list[StagedEvent]) -> None:
        if self._relay is not None and staged:
            self._relay.committed(staged)
        # without a relay (not started yet), the rows wait in the table for the first sweep

    async def published(self, event_ids: Sequence[str], timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until the relay published `event_ids`; False if it did not
        (no relay, the bus is down, a backlog): they are committed and will be published."""
        relay = self._relay
        if relay is None or relay.loop is not asyncio.get_running_loop():
            return False
        return await relay.wait_published(event_ids, timeout_s)

    def published_sync(self, event_ids: Sequence[str], timeout_s: float) -> bool:
        """`published` from a thread that is not the relay's loop (a sync route's worker thread);
        on the loop's own thread it does not wait (that would block the relay)."""
        relay = self._relay
        loop = None if relay is None else relay.loop
        if relay is None or loop is None or loop.is_closed():
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return False
        future = asyncio.run_coroutine_threadsafe(relay.wait_published(event_ids, timeout_s), loop)
        try:
            return future.result(timeout_s + 1.0)
        except TimeoutError:
            future.cancel()
            return False

    # -- the relay's side -------------------------------------------------------------------------

    def create_table(self) -> None:
        """Create the table if it is missing (several workers may race to: the loser finds it)."""
        try:
            self.table.create(self.engine, checkfirst=True)
        except (OperationalError, ProgrammingError) as exc:
            if "already exists" not in str(exc):
                raise

    def pending(self, limit: int, *, committed_before_ms: int | None = None) -> list[StagedEvent]:
        """The oldest rows first (commit order per worker), at most `limit`."""
        query = select(self.table.c.id, self.table.c.event).order_by(self.table.c.id).limit(limit)
        if committed_before_ms is not None:
            query = query.where(self.table.c.created_ms < committed_before_ms)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [StagedEvent(int(row_id), Event.model_validate_json(text)) for row_id, text in rows]

    def remove(self, row_ids: Sequence[int]) -> None:
        """Delete published rows (deleting a row twice is harmless)."""
        if row_ids:
            with self.engine.begin() as connection:
                connection.execute(delete(self.table).where(self.table.c.id.in_(list(row_ids))))

    def backlog(self) -> Backlog:
        with self.engine.connect() as connection:
            rows, oldest = connection.execute(
                select(func.count(), func.min(self.table.c.created_ms)).select_from(self.table)).one()
        return Backlog(int(rows), None if oldest is None else int(oldest))


# -- session hooks ----------------------------------------------------------------------------------


def watch(session: Session) -> None:
    """Register the outbox's hooks on `session` (once): commits counted, staged events handed over
    on commit and forgotten on rollback."""
    if session.info.get(_WATCHED):
        return
    session.info[_WATCHED] = True
    session.info.setdefault(COMMITS, 0)
    sa_event.listen(session, "after_commit", _after_commit)
    sa_event.listen(session, "after_soft_rollback", _after_soft_rollback)
    sa_event.listen(session, "after_transaction_end", _after_transaction_end)


def _after_commit(session: Session) -> None:
    session.info[COMMITS] = session.info.get(COMMITS, 0) + 1
    if session.get_transaction() is not None and session.in_nested_transaction():
        return  # a SAVEPOINT released: the events are committed with the outer transaction
    staged: list[tuple[TransactionalOutbox, StagedEvent, Any]] = session.info.pop(_STAGED, [])
    by_outbox: dict[int, tuple[TransactionalOutbox, list[StagedEvent]]] = {}
    for outbox, item, _ in staged:
        by_outbox.setdefault(id(outbox), (outbox, []))[1].append(item)
    for outbox, items in by_outbox.values():
        try:
            outbox.committed(items)
        except Exception:  # after a commit nothing may fail the application: the sweep has them
            log.exception("handing %d committed events to the outbox relay failed; the sweep publishes them",
                          len(items))


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    """Forget what the rolled-back transaction (or SAVEPOINT) staged: its rows are gone too."""
    staged: list[tuple[TransactionalOutbox, StagedEvent, SessionTransaction | None]] = session.info.get(_STAGED, [])
    if not staged:
        return
    session.info[_STAGED] = [entry for entry in staged if not _within(entry[2], previous)]


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended without a commit (closed, or rolled back): nothing it staged
    was stored. (On commit `_after_commit`, which runs first, already took the events.)"""
    if transaction.parent is None:
        session.info.pop(_STAGED, None)


def _within(transaction: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False
