"""Topic patterns, the event catalogue an application declares, and the event envelope (pure)."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from examples.chat.declaration import ChatEvent
from tests.support import CHAT
from wsmigrate.unified import Event, EventCatalog
from wsmigrate.unified.errors import InvalidTopicError, RoutingError, UnknownEventTypeError
from wsmigrate.unified.topics import MAX_INT_ID, TopicGrammar, TopicPattern

BOARD = "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"
TASK = "0b8e7d6c-5a4f-4e3d-9c2b-1a0f9e8d7c6b"


def boards_catalog() -> EventCatalog:
    """A second application, unlike the chat app: UUID ids, its own names and topics."""
    catalog = EventCatalog(topics=["board:{board_id:uuid}", "task:{task_id:uuid}", "boards", "team:{team:slug}"])
    catalog.event("task_created", topics=["board:{board_id}", "task:{id}"])
    catalog.event("comment_added", topics=["task:{task_id}", "board:{board_id}"])
    catalog.event("board_created", topics=["boards"], audience="owner_id")
    catalog.event("team_note", topics=lambda data: [f"team:{data['team']}"])
    return catalog


# -- topic patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "params"),
    [
        ("agents", {}),
        ("system", {}),
        ("agent:7", {"agent_id": 7}),
        ("thread:45", {"thread_id": 45}),
        ("thread:123456789012345678", {"thread_id": 123456789012345678}),
        (f"thread:{MAX_INT_ID}", {"thread_id": MAX_INT_ID}),
    ],
)
def test_valid_chat_topics_parse_to_typed_parameters(raw: str, params: dict[str, Any]) -> None:
    topic = CHAT.parse_topic(raw)
    assert dict(topic.params) == params
    assert str(topic) == raw


@pytest.mark.parametrize(
    "raw",
    ["", "agent", "agent:", "agent:x", "agent:0", "agent:07", "agent:-1", "thread:1.5", "Agents", " agents",
     "thread:45 ", "thread:1\n", "agents\n", "user:1", "agent:1:2", f"thread:{MAX_INT_ID + 1}",
     "thread:99999999999999999999", 45, None, ["agents"], "a" * 200],
)
def test_everything_else_is_an_invalid_topic(raw: object) -> None:
    with pytest.raises(InvalidTopicError):
        CHAT.parse_topic(raw)


def test_uuid_and_slug_parameters_match_whole_canonical_strings() -> None:
    grammar = boards_catalog().grammar
    topic = grammar.parse(f"board:{BOARD}")
    assert topic.params == {"board_id": uuid.UUID(BOARD)}
    assert grammar.parse("team:ops-1").params == {"team": "ops-1"}
    assert grammar.parse("boards").pattern is not None
    for bad in (f"board:{BOARD.upper()}", f"board:{BOARD}\n", f"board:{BOARD[:-1]}", f"board:{{{BOARD}}}",
                "board:1", "team:-ops", "team:Ops", "team:" + "a" * 65, f"task:{BOARD} "):
        assert not grammar.is_valid(bad), bad


@given(st.text(max_size=80))
def test_a_topic_that_parses_prints_back_to_itself(raw: str) -> None:
    grammar = boards_catalog().grammar
    if grammar.is_valid(raw):
        assert str(grammar.parse(raw)) == raw
        assert "\n" not in raw


def test_the_probe_topic_is_reserved_and_always_valid() -> None:
    assert TopicGrammar().parse("probe").pattern is None
    with pytest.raises(ValueError, match="reserved"):
        TopicPattern("probe")


@pytest.mark.parametrize("bad", ["board:{id:float}", "board:{id}:{id}", "Board:{id}", "board {id}", ""])
def test_bad_patterns_are_refused_when_declared(bad: str) -> None:
    with pytest.raises(ValueError):
        TopicPattern(bad)


def test_format_checks_the_values() -> None:
    pattern = TopicPattern("board:{board_id:uuid}")
    assert pattern.format(board_id=BOARD) == f"board:{BOARD}"
    with pytest.raises(InvalidTopicError):
        pattern.format(board_id="nope")
    with pytest.raises(InvalidTopicError):
        pattern.format()


# -- the chat app's catalogue --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "data", "topics"),
    [
        (ChatEvent.AGENT_CREATED, {"id": 7}, ["agent:7", "agents"]),
        (ChatEvent.AGENT_UPDATED, {"id": 7}, ["agent:7", "agents"]),
        (ChatEvent.AGENT_DELETED, {"agent_id": 7}, ["agent:7", "agents"]),
        (ChatEvent.AGENT_STATUS_CHANGED, {"id": 7, "status": "running"}, ["agent:7", "agents"]),
        (ChatEvent.THREAD_CREATED, {"id": 45, "agent_id": 7}, ["thread:45", "agent:7"]),
        (ChatEvent.THREAD_UPDATED, {"thread_id": 45, "agent_id": 7}, ["thread:45", "agent:7"]),
        (ChatEvent.THREAD_DELETED, {"id": 45, "agent_id": 7}, ["thread:45", "agent:7"]),
        (ChatEvent.MESSAGE_CREATED, {"id": 1, "thread_id": 45}, ["thread:45"]),
        (ChatEvent.STREAM_START, {"thread_id": 45}, ["thread:45"]),
        (ChatEvent.STREAM_CHUNK, {"thread_id": 45, "content": "x"}, ["thread:45"]),
        (ChatEvent.STREAM_END, {"thread_id": 45}, ["thread:45"]),
        (ChatEvent.STREAM_ERROR, {"thread_id": 45, "error": "boom"}, ["thread:45"]),
        (ChatEvent.SYSTEM_STATUS, {"status": "ok"}, ["system"]),
    ],
)
def test_every_event_type_has_its_topic_rule(event_type: ChatEvent, data: dict, topics: list[str]) -> None:
    assert CHAT.topics_for(event_type, data) == topics
    event = CHAT.create(event_type, data)
    assert event.type == event_type.value
    assert type(event.type) is str  # an app's StrEnum becomes the plain name on the wire
    assert event.topic == topics[0]
    assert CHAT.delivery_topics(event) == topics


def test_the_catalogue_is_exactly_the_declared_one() -> None:
    assert set(CHAT.names) == {t.value for t in ChatEvent}


def test_agent_events_have_their_owner_as_audience() -> None:
    assert CHAT.audience(CHAT.create(ChatEvent.AGENT_UPDATED, {"id": 7, "owner_id": 3})) == "3"
    assert CHAT.audience(CHAT.create(ChatEvent.AGENT_UPDATED, {"id": 7, "owner_id": None})) is None
    assert CHAT.audience(CHAT.create(ChatEvent.THREAD_UPDATED, {"id": 4, "agent_id": 7, "owner_id": 3})) is None


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        (ChatEvent.STREAM_CHUNK, {"content": "x"}),  # no thread
        (ChatEvent.STREAM_CHUNK, {"thread_id": True}),  # a bool is no id
        (ChatEvent.STREAM_CHUNK, {"thread_id": 0}),
        (ChatEvent.STREAM_CHUNK, {"thread_id": MAX_INT_ID + 1}),  # beyond what a database stores
        (ChatEvent.THREAD_UPDATED, {"id": 4}),  # no agent for the second topic
    ],
)
def test_data_without_valid_ids_is_a_routing_error(event_type: ChatEvent, data: dict) -> None:
    with pytest.raises(RoutingError):
        CHAT.topics_for(event_type, data)


def test_an_undeclared_type_is_refused_by_name() -> None:
    with pytest.raises(UnknownEventTypeError, match="declared: agent_created"):
        CHAT.create("typing", {"thread_id": 1})


# -- another application's catalogue --------------------------------------------------------------


def test_uuid_topics_and_a_function_rule() -> None:
    catalog = boards_catalog()
    event = catalog.create("task_created", {"id": TASK, "board_id": uuid.UUID(BOARD), "title": "t"})
    assert catalog.delivery_topics(event) == [f"board:{BOARD}", f"task:{TASK}"]
    assert catalog.topics_for("comment_added", {"task_id": TASK, "board_id": BOARD}) == [f"task:{TASK}",
                                                                                           f"board:{BOARD}"]
    assert catalog.topics_for("team_note", {"team": "ops"}) == ["team:ops"]
    with pytest.raises(RoutingError):  # a function's topics are checked against the grammar too
        catalog.topics_for("team_note", {"team": "Not A Slug"})
    assert catalog.audience(catalog.create("board_created", {"owner_id": "u-1"})) == "u-1"


def test_an_apps_own_strenum_names_its_types() -> None:
    class Kind(StrEnum):
        SHIPPED = "order_shipped"

    catalog = EventCatalog(topics=["order:{order_id:int}"])
    catalog.event(Kind.SHIPPED, topics=["order:{id}"])
    assert catalog.names == ("order_shipped",)
    assert catalog.create(Kind.SHIPPED, {"id": 5}).topic == "order:5"


@pytest.mark.parametrize(
    ("name", "topics"),
    [
        ("Task_Created", ["boards"]),  # not a label-safe name
        ("unknown", ["boards"]),  # reserved for untranslatable legacy frames
        ("wsmigrate_probe", ["boards"]),  # wsmigrate's own
        ("task_created", ["project:{id}"]),  # matches no declared topic
        ("task_created", "boards"),  # a string, not a list of templates
        ("task_created", []),
    ],
)
def test_declaration_errors_are_caught_at_declaration(name: str, topics: Any) -> None:
    catalog = EventCatalog(topics=["board:{board_id:uuid}", "boards"])
    with pytest.raises(ValueError):
        catalog.event(name, topics=topics)


def test_a_type_cannot_be_declared_twice() -> None:
    catalog = boards_catalog()
    with pytest.raises(ValueError, match="twice"):
        catalog.event("task_created", topics=["boards"])


# -- the envelope --------------------------------------------------------------------------------


def test_envelope_fields_and_unique_ids() -> None:
    a = CHAT.create(ChatEvent.STREAM_CHUNK, {"thread_id": 1, "content": "x"})
    b = CHAT.create(ChatEvent.STREAM_CHUNK, {"thread_id": 1, "content": "x"})
    assert a.event_id != b.event_id
    assert set(a.model_dump()) >= {"v", "type", "topic", "event_id", "seq", "ts", "data"}
    assert a.v == 1
    assert a.ts > 1_700_000_000_000


def test_explicit_topic_outside_the_rule_goes_to_that_topic_only() -> None:
    event = Event(type=ChatEvent.SYSTEM_STATUS, topic="probe", data={})
    assert CHAT.delivery_topics(event) == ["probe"]


def test_stamped_is_exactly_model_copy() -> None:
    """Pins `Event.stamped` (the bus's fast copy) against pydantic's own `model_copy`."""
    event = CHAT.create(ChatEvent.AGENT_UPDATED, {"id": 7, "name": "x", "owner_id": 3})
    stamped = event.sequenced("agents", 41, "e1")
    reference = event.model_copy(update={"topic": "agents", "seq": 41, "epoch": "e1"})
    assert stamped == reference
    assert stamped.model_dump_json() == reference.model_dump_json()
    assert stamped.model_fields_set == reference.model_fields_set
    assert (stamped.topic, stamped.seq, stamped.epoch) == ("agents", 41, "e1")
    assert (event.topic, event.seq, event.epoch) == ("agent:7", 0, "")  # the original is untouched
    with pytest.raises(ValidationError):
        stamped.seq = 1  # type: ignore[misc]  # still frozen


@pytest.mark.parametrize("event_type", list(ChatEvent))
def test_route_topics_of_single_topic_types_is_the_event_topic(event_type: ChatEvent) -> None:
    data = {"id": 1, "agent_id": 2, "thread_id": 3}
    rule = CHAT.topics_for(event_type, data)
    for topic in (rule[0], "thread:99", "system"):
        routed = CHAT.delivery_topics(Event(type=event_type, topic=topic, data=data))
        if len(rule) == 1:
            assert routed == [topic]
        else:
            assert routed == ([topic, *(t for t in rule if t != topic)] if topic in rule else [topic])
