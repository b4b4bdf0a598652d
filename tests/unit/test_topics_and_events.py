from __future__ import annotations

import pytest
from pydantic import ValidationError

from wsmigrate.unified.errors import InvalidTopicError
from wsmigrate.unified.events import Event, EventType, route_topics, topics_for
from wsmigrate.unified.topics import Topic, parse_topic


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("agents", Topic("agents")),
        ("system", Topic("system")),
        ("agent:7", Topic("agent", 7)),
        ("thread:45", Topic("thread", 45)),
        ("thread:123456789012345678", Topic("thread", 123456789012345678)),
    ],
)
def test_valid_topics_parse_and_print_back(raw: str, expected: Topic) -> None:
    assert parse_topic(raw) == expected
    assert str(parse_topic(raw)) == raw


@pytest.mark.parametrize(
    "raw",
    ["", "agent", "agent:", "agent:x", "agent:0", "agent:07", "agent:-1", "thread:1.5", "Agents", " agents",
     "thread:45 ", "user:1", "agent:1:2", "thread:1234567890123456789", 45, None, ["agents"], "a" * 100],
)
def test_everything_else_is_an_invalid_topic(raw: object) -> None:
    with pytest.raises(InvalidTopicError):
        parse_topic(raw)


@pytest.mark.parametrize(
    ("event_type", "data", "topics"),
    [
        (EventType.AGENT_CREATED, {"id": 7}, ["agent:7", "agents"]),
        (EventType.AGENT_UPDATED, {"id": 7}, ["agent:7", "agents"]),
        (EventType.AGENT_DELETED, {"agent_id": 7}, ["agent:7", "agents"]),
        (EventType.AGENT_STATUS_CHANGED, {"id": 7, "status": "running"}, ["agent:7", "agents"]),
        (EventType.THREAD_CREATED, {"id": 45, "agent_id": 7}, ["thread:45", "agent:7"]),
        (EventType.THREAD_UPDATED, {"thread_id": 45, "agent_id": 7}, ["thread:45", "agent:7"]),
        (EventType.THREAD_DELETED, {"id": 45, "agent_id": 7}, ["thread:45", "agent:7"]),
        (EventType.MESSAGE_CREATED, {"id": 1, "thread_id": 45}, ["thread:45"]),
        (EventType.STREAM_START, {"thread_id": 45}, ["thread:45"]),
        (EventType.STREAM_CHUNK, {"thread_id": 45, "content": "x"}, ["thread:45"]),
        (EventType.STREAM_END, {"thread_id": 45}, ["thread:45"]),
        (EventType.STREAM_ERROR, {"thread_id": 45, "error": "boom"}, ["thread:45"]),
        (EventType.SYSTEM_STATUS, {"status": "ok"}, ["system"]),
    ],
)
def test_every_event_type_has_its_topic_rule(event_type: EventType, data: dict, topics: list[str]) -> None:
    assert topics_for(event_type, data) == topics
    event = Event.create(event_type, data)
    assert event.topic == topics[0]
    assert route_topics(event) == topics


def test_catalogue_is_exactly_the_documented_one() -> None:
    assert {t.value for t in EventType} == {
        "agent_created", "agent_updated", "agent_deleted", "agent_status_changed", "thread_created",
        "thread_updated", "thread_deleted", "message_created", "stream_start", "stream_chunk", "stream_end",
        "stream_error", "system_status",
    }


def test_envelope_fields_and_unique_ids() -> None:
    a = Event.create(EventType.STREAM_CHUNK, {"thread_id": 1, "content": "x"})
    b = Event.create(EventType.STREAM_CHUNK, {"thread_id": 1, "content": "x"})
    assert a.event_id != b.event_id
    assert set(a.model_dump()) >= {"v", "type", "topic", "event_id", "seq", "ts", "data"}
    assert a.v == 1
    assert a.ts > 1_700_000_000_000


def test_explicit_topic_outside_the_rule_goes_to_that_topic_only() -> None:
    event = Event(type=EventType.SYSTEM_STATUS, topic="probe", data={})
    assert route_topics(event) == ["probe"]


def test_stamped_is_exactly_model_copy() -> None:
    """Pins `Event.stamped` (the bus's fast copy) against pydantic's own `model_copy`."""
    event = Event.create(EventType.AGENT_UPDATED, {"id": 7, "name": "x", "owner_id": 3})
    stamped = event.stamped("agents", 41, "e1")
    reference = event.model_copy(update={"topic": "agents", "seq": 41, "epoch": "e1"})
    assert stamped == reference
    assert stamped.model_dump_json() == reference.model_dump_json()
    assert stamped.model_fields_set == reference.model_fields_set
    assert (stamped.topic, stamped.seq, stamped.epoch) == ("agents", 41, "e1")
    assert (event.topic, event.seq, event.epoch) == ("agent:7", 0, "")  # the original is untouched
    with pytest.raises(ValidationError):
        stamped.seq = 1  # type: ignore[misc]  # still frozen


@pytest.mark.parametrize("event_type", list(EventType))
def test_route_topics_of_single_topic_types_is_the_event_topic(event_type: EventType) -> None:
    data = {"id": 1, "agent_id": 2, "thread_id": 3}
    rule = topics_for(event_type, data)
    for topic in (rule[0], "thread:99", "system"):
        routed = route_topics(Event(type=event_type, topic=topic, data=data))
        if len(rule) == 1:
            assert routed == [topic]
        else:
            assert routed == ([topic, *(t for t in rule if t != topic)] if topic in rule else [topic])
