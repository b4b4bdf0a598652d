"""The `Event` envelope: what every unified client receives, whichever event type it carries.

Event types, their topic rules and audiences are the application's own, declared in an
`EventCatalog` (`wsmigrate.unified.catalog`); the envelope only requires the type's name.
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION: Literal[1] = 1


_set = object.__setattr__  # frozen models: how pydantic itself fills a copy
_STAMP_FIELDS = frozenset({"topic", "seq", "epoch"})


def new_event_id() -> str:
    """128 random bits as 32 hex digits (the shape of `uuid4().hex`, at a sixth of its cost)."""
    return os.urandom(16).hex()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class StreamPosition(BaseModel):
    """Where a topic's stream stands, on the wire: `seq` of an event in history epoch `epoch`.

    One shape wherever a position travels: in `subscribe.since`, in an event of several topics
    (`Event.positions`), and in the positions a REST snapshot hands out (`unified.snapshot`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epoch: str = Field(max_length=64)
    seq: int = Field(ge=0)
    # The id of the event at `seq`, when the sender knows it (a client's last event): the server
    # then replays only if that event is still at `seq` (docs/protocol.md, "Order and recovery").
    event_id: str | None = Field(default=None, max_length=64, exclude_if=lambda value: value is None)


class Event(BaseModel):
    """The unified wire envelope. One logical event has one `event_id` for its whole life."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = PROTOCOL_VERSION
    type: str = Field(min_length=1, max_length=64)
    topic: str
    event_id: str = Field(default_factory=new_event_id, min_length=1, max_length=64)
    seq: int = 0
    epoch: str = ""
    ts: int = Field(default_factory=now_ms)
    data: dict[str, Any] = Field(default_factory=dict)
    # Every topic of an event addressed to several, primary first (absent otherwise): a client that
    # follows two of them receives the event once and hands it to the handlers of both.
    topics: list[str] | None = Field(default=None, exclude_if=lambda value: value is None)
    # For an event of several topics, its position on each (the frame's own `seq`/`epoch` are those
    # of `topic` only): a client that follows several of them knows exactly how far each has come.
    positions: dict[str, StreamPosition] | None = Field(default=None, exclude_if=lambda value: value is None)

    def addressed(self, topics: list[str]) -> Event:
        """This event carrying its topic list (the bus sets it on events of several topics)."""
        return self.model_copy(update={"topics": topics})

    def sequenced(
        self, topic: str, seq: int, epoch: str, positions: dict[str, StreamPosition] | None = None,
    ) -> Event:
        """This event as it is delivered on `topic` at (`epoch`, `seq`).

        What `model_copy(update=...)` does, without its generic machinery: the bus stamps every
        event it sequences, so this runs once per event. The copy shares `data` (events are
        frozen and the bus never mutates it); `tests/unit/test_topics_and_events.py` pins the
        result against `model_copy` so a pydantic change cannot slip past.
        """
        copy = Event.__new__(Event)
        stamp: dict[str, Any] = {"topic": topic, "seq": seq, "epoch": epoch}
        fields = _STAMP_FIELDS
        if positions is not None:
            stamp["positions"] = positions
            fields = _STAMP_FIELDS | {"positions"}
        _set(copy, "__dict__", {**self.__dict__, **stamp})
        _set(copy, "__pydantic_fields_set__", self.__pydantic_fields_set__ | fields)
        _set(copy, "__pydantic_extra__", None)
        _set(copy, "__pydantic_private__", None)
        return copy
