"""The boards app's data: users, boards, tasks, comments; UUID ids; SQLite by default.

Its own SQLAlchemy models and engine (nothing shared with the chat example): ids are UUIDs stored
as their canonical 36-character strings, the form they take in topics and legacy URLs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from wsmigrate import TransactionalOutbox

COLUMNS = ("todo", "doing", "done")


def new_id() -> str:
    return str(uuid.uuid4())


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Base(DeclarativeBase):
    pass


class Member(Base):
    __tablename__ = "members"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token: Mapped[str] = mapped_column(String(200), unique=True, index=True)


class Board(Base):
    __tablename__ = "boards"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("members.id"), index=True, default=None)
    name: Mapped[str] = mapped_column(String(200))
    tasks: Mapped[list[Task]] = relationship(back_populates="board", cascade="all, delete-orphan",
                                             order_by="Task.position")


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    board_id: Mapped[str] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    column: Mapped[str] = mapped_column(String(20), default="todo")
    position: Mapped[int] = mapped_column(default=0)
    board: Mapped[Board] = relationship(back_populates="tasks")
    comments: Mapped[list[Comment]] = relationship(back_populates="task", cascade="all, delete-orphan",
                                                   order_by="Comment.created_at")


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(30), default=now_iso)
    task: Mapped[Task] = relationship(back_populates="comments")


class Database:
    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.outbox = TransactionalOutbox(self.engine)  # events committed with their changes

    def create_all(self) -> None:
        """Create missing tables (several workers may race on a fresh file: the loser finds them)."""
        for table in Base.metadata.sorted_tables:  # one by one: a racing worker may be mid-way
            try:
                table.create(self.engine, checkfirst=True)
            except OperationalError as exc:
                if "already exists" not in str(exc):
                    raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
