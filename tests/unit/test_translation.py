from __future__ import annotations

import pytest

from wsmigrate.bridge import translation
from wsmigrate.legacy import frames
from wsmigrate.unified import Event, EventType, route_topics

AGENT = {"id": 7, "agent_id": 7, "name": "Ada", "system_prompt": "", "status": "idle", "owner_id": None,
         "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z"}
THREAD = {"id": 45, "thread_id": 45, "agent_id": 7, "title": "t", "created_at": "x", "updated_at": "y"}
MESSAGE = {"id": 2, "thread_id": 45, "role": "assistant", "content": "...", "timestamp": "2026-01-01T00:00:00.000Z"}

GOLDEN = [
    (frames.thread_message(MESSAGE), EventType.MESSAGE_CREATED, ("thread", 45)),
    (frames.stream_start(45), EventType.STREAM_START, ("thread", 45)),
    (frames.stream_chunk(45, "tok"), EventType.STREAM_CHUNK, ("thread", 45)),
    (frames.stream_end(45), EventType.STREAM_END, ("thread", 45)),
    (frames.stream_error(45, "boom"), EventType.STREAM_ERROR, ("thread", 45)),
    (frames.flat("agent_created", AGENT), EventType.AGENT_CREATED, ("agent", 7)),
    (frames.flat("agent_updated", AGENT), EventType.AGENT_UPDATED, ("agent", 7)),
    (frames.flat("agent_deleted", AGENT), EventType.AGENT_DELETED, ("agent", 7)),
    (frames.flat("agent_status_changed", AGENT), EventType.AGENT_STATUS_CHANGED, ("agent", 7)),
    (frames.flat("thread_created", THREAD), EventType.THREAD_CREATED, ("agent", 7)),
    (frames.flat("thread_updated", THREAD), EventType.THREAD_UPDATED, ("agent", 7)),
    (frames.flat("thread_deleted", THREAD), EventType.THREAD_DELETED, ("agent", 7)),
    (frames.flat("system_status", {"status": "degraded"}), EventType.SYSTEM_STATUS, ("global", None)),
]


@pytest.mark.parametrize(("frame", "event_type", "route"), GOLDEN)
def test_legacy_frames_round_trip_exactly(frame: dict, event_type: EventType, route: tuple) -> None:
    translated = translation.to_event(frame)
    assert translated is not None
    assert translated[0] is event_type
    legacy_route, back = translation.to_legacy(*translated)
    assert back == frame
    assert frames.encode(back) == frames.encode(frame)  # byte-identical, key order included
    assert (legacy_route.scope, legacy_route.target_id) == route


@pytest.mark.parametrize(("frame", "event_type", "route"), GOLDEN)
def test_the_legacy_route_is_one_of_the_events_unified_topics(frame: dict, event_type: EventType,
                                                              route: tuple) -> None:
    translated = translation.to_event(frame)
    assert translated is not None
    event = Event.create(*translated)
    legacy_route, _ = translation.to_legacy(*translated)
    assert legacy_route.topic in route_topics(event)


def test_every_event_type_has_exactly_one_row() -> None:
    assert set(translation.BY_EVENT_TYPE) == set(EventType)
    assert len(translation.ROWS) == len(EventType)


def test_unknown_frames_are_not_translated() -> None:
    assert translation.to_event({"type": "typing_indicator", "thread_id": 1}) is None
    assert translation.to_event({"thread_id": 1}) is None
