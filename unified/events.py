"""The event catalogue, the `Event` envelope, and the rule that maps each event to its topics.

Topic rules (documented in docs/protocol.md):

| event types                                                         | topics                              |
|---------------------------------------------------------------------|-------------------------------------|
| agent_created, agent_updated, agent_deleted, agent_status_changed   | `agent:{id}`, `agents`              |
| thread_created, thread_updated, thread_deleted                      | `thread:{id}`, `agent:{agent_id}`   |
| message_created, stream_start, stream_chunk, stream_end, stream_error | `thread:{thread_id}`              |
| system_status                                                       | `system`                            |

The first topic of a rule is the event's primary topic (`Event.topic` when it enters the bus).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wsmigrate.unified.errors import RoutingError
from wsmigrate.unified.topics import agent_topic, thread_topic

PROTOCOL_VERSION: Literal[1] = 1


class EventType(StrEnum):
    AGENT_CREATED = "agent_created"
    AGENT_UPDATED = "agent_updated"
    AGENT_DELETED = "agent_deleted"
    AGENT_STATUS_CHANGED = "agent_status_changed"
    THREAD_CREATED = "thread_created"
    THREAD_UPDATED = "thread_updated"
    THREAD_DELETED = "thread_deleted"
    MESSAGE_CREATED = "message_created"
    STREAM_START = "stream_start"
    STREAM_CHUNK = "stream_chunk"
    STREAM_END = "stream_end"
    STREAM_ERROR = "stream_error"
    SYSTEM_STATUS = "system_status"


AGENT_EVENTS = frozenset(
    {EventType.AGENT_CREATED, EventType.AGENT_UPDATED, EventType.AGENT_DELETED, EventType.AGENT_STATUS_CHANGED}
)
THREAD_EVENTS = frozenset({EventType.THREAD_CREATED, EventType.THREAD_UPDATED, EventType.THREAD_DELETED})
MULTI_TOPIC_EVENTS = AGENT_EVENTS | THREAD_EVENTS  # the types whose rule names two topics
THREAD_CONTENT_EVENTS = frozenset(
    {
        EventType.MESSAGE_CREATED,
        EventType.STREAM_START,
        EventType.STREAM_CHUNK,
        EventType.STREAM_END,
        EventType.STREAM_ERROR,
    }
)


_set = object.__setattr__  # frozen models: how pydantic itself fills a copy
_STAMP_FIELDS = frozenset({"topic", "seq", "epoch"})


def new_event_id() -> str:
    """128 random bits as 32 hex digits (the shape of `uuid4().hex`, at a sixth of its cost)."""
    return os.urandom(16).hex()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Event(BaseModel):
    """The unified wire envelope. One logical event has one `event_id` for its whole life."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = PROTOCOL_VERSION
    type: EventType
    topic: str
    event_id: str = Field(default_factory=new_event_id, min_length=1, max_length=64)
    seq: int = 0
    epoch: str = ""
    ts: int = Field(default_factory=now_ms)
    data: dict[str, Any] = Field(default_factory=dict)

    def stamped(self, topic: str, seq: int, epoch: str) -> Event:
        """This event as it is delivered on `topic` at (`epoch`, `seq`).

        What `model_copy(update=...)` does, without its generic machinery: the bus stamps every
        event it sequences, so this runs once per event. The copy shares `data` (events are
        frozen and the bus never mutates it); `tests/unit/test_topics_and_events.py` pins the
        result against `model_copy` so a pydantic change cannot slip past.
        """
        copy = Event.__new__(Event)
        _set(copy, "__dict__", {**self.__dict__, "topic": topic, "seq": seq, "epoch": epoch})
        _set(copy, "__pydantic_fields_set__", self.__pydantic_fields_set__ | _STAMP_FIELDS)
        _set(copy, "__pydantic_extra__", None)
        _set(copy, "__pydantic_private__", None)
        return copy

    @classmethod
    def create(cls, event_type: EventType, data: Mapping[str, Any], *, event_id: str | None = None) -> Event:
        """Build an event whose primary topic follows the type's topic rule."""
        topics = topics_for(event_type, data)
        return cls(
            type=event_type,
            topic=topics[0],
            data=dict(data),
            event_id=event_id or new_event_id(),
        )


def _int_field(data: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise RoutingError(f"event data needs an integer {' or '.join(names)!s}")


def topics_for(event_type: EventType, data: Mapping[str, Any]) -> list[str]:
    """The topics an event of `event_type` with `data` is delivered to, primary first."""
    if event_type in AGENT_EVENTS:
        return [agent_topic(_int_field(data, "id", "agent_id")), "agents"]
    if event_type in THREAD_EVENTS:
        return [thread_topic(_int_field(data, "id", "thread_id")), agent_topic(_int_field(data, "agent_id"))]
    if event_type in THREAD_CONTENT_EVENTS:
        return [thread_topic(_int_field(data, "thread_id"))]
    return ["system"]


def route_topics(event: Event) -> list[str]:
    """All topics of `event`: its primary topic plus the rule's others (deduplicated, ordered).

    An event published to an explicit topic (operators' synthetic events, probes) whose data does
    not carry the rule's fields goes to that topic only. Types whose rule has one topic always go
    to `event.topic` alone (it is the rule's topic, or an explicit one), so only the others are
    worked out.
    """
    if event.type not in MULTI_TOPIC_EVENTS:
        return [event.topic]
    try:
        rule = topics_for(event.type, event.data)
    except RoutingError:
        return [event.topic]
    if event.topic not in rule:
        return [event.topic]
    return [event.topic, *(t for t in rule if t != event.topic)]
