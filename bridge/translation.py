"""The translation table: the only module that knows both the legacy frames and the unified events.

Pure functions, no I/O. Each row says, for one event type, which legacy frame type carries it,
where the old code broadcast it (thread, agent or global), and how to turn one shape into the
other. Round trips are exact: a legacy frame translated to an event and rendered back is equal to
the original, so mirroring never changes what a legacy client sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from wsmigrate.bridge.errors import TranslationError
from wsmigrate.legacy.frames import Frame
from wsmigrate.unified import EventType

Scope = Literal["thread", "agent", "global"]


class LegacyRoute(NamedTuple):
    """Where the old code broadcast a frame: `broadcast_to_thread(id)`, `_to_agent(id)` or global.

    A named tuple because one is built for every event the bridge sees."""

    scope: Scope
    target_id: int | None

    @property
    def topic(self) -> str:
        """The unified topic a legacy socket following this scope is attached to."""
        return "system" if self.scope == "global" else f"{self.scope}:{self.target_id}"


@dataclass(frozen=True, slots=True)
class Row:
    event_type: EventType
    frame_type: str
    scope: Scope
    route_fields: tuple[str, ...]  # data fields holding the thread or agent id, first present wins
    to_data: Callable[[Mapping[str, Any]], dict[str, Any]]
    to_frame: Callable[[str, Mapping[str, Any]], Frame]


def _flat_data(frame: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k != "type"}


def _flat_frame(frame_type: str, data: Mapping[str, Any]) -> Frame:
    return {"type": frame_type, **data}


def _message_data(frame: Mapping[str, Any]) -> dict[str, Any]:
    message = frame.get("message")
    if not isinstance(message, Mapping):
        raise TranslationError("thread_message without a message object")
    return dict(message)


def _message_frame(frame_type: str, data: Mapping[str, Any]) -> Frame:
    return {"type": frame_type, "thread_id": data["thread_id"], "message": dict(data)}


def _flat_row(event_type: EventType, scope: Scope, *route_fields: str) -> Row:
    return Row(event_type, event_type.value, scope, route_fields, _flat_data, _flat_frame)


ROWS: tuple[Row, ...] = (
    Row(EventType.MESSAGE_CREATED, "thread_message", "thread", ("thread_id",), _message_data, _message_frame),
    _flat_row(EventType.STREAM_START, "thread", "thread_id"),
    _flat_row(EventType.STREAM_CHUNK, "thread", "thread_id"),
    _flat_row(EventType.STREAM_END, "thread", "thread_id"),
    _flat_row(EventType.STREAM_ERROR, "thread", "thread_id"),
    _flat_row(EventType.AGENT_CREATED, "agent", "agent_id", "id"),
    _flat_row(EventType.AGENT_UPDATED, "agent", "agent_id", "id"),
    _flat_row(EventType.AGENT_DELETED, "agent", "agent_id", "id"),
    _flat_row(EventType.AGENT_STATUS_CHANGED, "agent", "agent_id", "id"),
    _flat_row(EventType.THREAD_CREATED, "agent", "agent_id"),
    _flat_row(EventType.THREAD_UPDATED, "agent", "agent_id"),
    _flat_row(EventType.THREAD_DELETED, "agent", "agent_id"),
    _flat_row(EventType.SYSTEM_STATUS, "global"),
)
BY_FRAME_TYPE: dict[str, Row] = {row.frame_type: row for row in ROWS}
BY_EVENT_TYPE: dict[EventType, Row] = {row.event_type: row for row in ROWS}


def event_type_of_frame(frame: Mapping[str, Any]) -> EventType | None:
    row = BY_FRAME_TYPE.get(str(frame.get("type")))
    return row.event_type if row else None


def to_event(frame: Mapping[str, Any]) -> tuple[EventType, dict[str, Any]] | None:
    """A legacy broadcast frame as (event type, data); None for a frame type the table lacks."""
    row = BY_FRAME_TYPE.get(str(frame.get("type")))
    if row is None:
        return None
    return row.event_type, row.to_data(frame)


def _route_id(row: Row, data: Mapping[str, Any]) -> int | None:
    if not row.route_fields:
        return None
    for field in row.route_fields:
        value = data.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise TranslationError(f"{row.event_type.value} data lacks an integer {' or '.join(row.route_fields)}")


def legacy_route(event_type: EventType, data: Mapping[str, Any]) -> LegacyRoute:
    """Where the old app would have broadcast this event (cheap: no frame is built)."""
    row = BY_EVENT_TYPE[event_type]
    return LegacyRoute(row.scope, _route_id(row, data))


def legacy_frame(event_type: EventType, data: Mapping[str, Any]) -> Frame:
    """The frame the old app would have sent for this event."""
    row = BY_EVENT_TYPE[event_type]
    return row.to_frame(row.frame_type, data)


def to_legacy(event_type: EventType, data: Mapping[str, Any]) -> tuple[LegacyRoute, Frame]:
    """Where the old app would have broadcast this event, and the frame it would have sent."""
    return legacy_route(event_type, data), legacy_frame(event_type, data)
