"""The reference application's data model (SQLAlchemy 2, SQLite by default).

Users own agents, agents own threads, threads hold messages. Any SQLAlchemy URL works through
`WSMIGRATE_DATABASE_URL`; SQLite gets WAL mode and a busy timeout so the REST routes (run in
worker threads) and the streaming runs can write concurrently.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from wsmigrate import TransactionalOutbox


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso_utc(moment: datetime) -> str:
    """The legacy wire format for timestamps: ISO 8601 in UTC with a `Z`, millisecond precision."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True, default=None)
    name: Mapped[str] = mapped_column(String(200))
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(40), default="idle")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1, server_default="1")  # bumped by every update (`bump`)
    threads: Mapped[list[Thread]] = relationship(back_populates="agent", cascade="all, delete-orphan")


class Thread(Base):
    __tablename__ = "threads"
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    agent: Mapped[Agent] = relationship(back_populates="threads")
    messages: Mapped[list[Message]] = relationship(
        back_populates="thread", cascade="all, delete-orphan", order_by="Message.id"
    )


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    thread: Mapped[Thread] = relationship(back_populates="messages")


class Database:
    """Engine and session factory for one database URL."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Events are committed with the changes they announce (wsmigrate's transactional outbox)
        self.outbox = TransactionalOutbox(self.engine)

    def create_all(self) -> None:
        """Create missing tables. Several workers start at once on a fresh database: one of them
        may lose the race between "does the table exist" and "create it"; it then finds the
        tables made by the winner."""
        for table in Base.metadata.sorted_tables:  # one by one: a racing worker may be mid-way
            try:
                table.create(self.engine, checkfirst=True)
            except OperationalError as exc:
                if "already exists" not in str(exc):
                    raise
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """A database made by an older version of the app lacks `version`: add it (default 1)."""
        with self.engine.begin() as connection:
            for table in ("agents", "threads"):
                columns = {column["name"] for column in inspect(connection).get_columns(table)}
                if "version" not in columns:
                    try:
                        connection.execute(text(f"ALTER TABLE {table} ADD COLUMN version INTEGER NOT NULL DEFAULT 1"))
                    except (OperationalError, ProgrammingError) as exc:  # another worker added it first
                        if "duplicate column" not in str(exc) and "already exists" not in str(exc):
                            raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def bump(row: Agent | Thread) -> None:
    """Count a change of `row` (in the UPDATE itself, so concurrent changes each get a version)."""
    row.version = type(row).version + 1


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    if ":memory:" not in str(getattr(dbapi_connection, "database", "")):
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
