"""Translations: the chat app's table (goldens of every frame shape) and the builders (pure)."""

from __future__ import annotations

import pytest

from examples.chat import legacy_frames as frames
from examples.chat.declaration import ChatEvent, chat_translations
from tests.support import CHAT
from wsmigrate.bridge.errors import TranslationError
from wsmigrate.bridge.translation import LegacyRoute, TranslationTable, flat, legacy_only, nested
from wsmigrate.legacy.frames import encode

TABLE = chat_translations()

AGENT = {"id": 7, "agent_id": 7, "name": "Ada", "system_prompt": "", "status": "idle", "owner_id": None,
         "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z"}
THREAD = {"id": 45, "thread_id": 45, "agent_id": 7, "title": "t", "created_at": "x", "updated_at": "y"}
MESSAGE = {"id": 2, "thread_id": 45, "role": "assistant", "content": "...", "timestamp": "2026-01-01T00:00:00.000Z"}

GOLDEN = [
    (frames.thread_message(MESSAGE), ChatEvent.MESSAGE_CREATED, ("thread", 45)),
    (frames.stream_start(45), ChatEvent.STREAM_START, ("thread", 45)),
    (frames.stream_chunk(45, "tok"), ChatEvent.STREAM_CHUNK, ("thread", 45)),
    (frames.stream_end(45), ChatEvent.STREAM_END, ("thread", 45)),
    (frames.stream_error(45, "boom"), ChatEvent.STREAM_ERROR, ("thread", 45)),
    (frames.flat("agent_created", AGENT), ChatEvent.AGENT_CREATED, ("agent", 7)),
    (frames.flat("agent_updated", AGENT), ChatEvent.AGENT_UPDATED, ("agent", 7)),
    (frames.flat("agent_deleted", AGENT), ChatEvent.AGENT_DELETED, ("agent", 7)),
    (frames.flat("agent_status_changed", AGENT), ChatEvent.AGENT_STATUS_CHANGED, ("agent", 7)),
    (frames.flat("thread_created", THREAD), ChatEvent.THREAD_CREATED, ("agent", 7)),
    (frames.flat("thread_updated", THREAD), ChatEvent.THREAD_UPDATED, ("agent", 7)),
    (frames.flat("thread_deleted", THREAD), ChatEvent.THREAD_DELETED, ("agent", 7)),
    (frames.flat("system_status", {"status": "degraded"}), ChatEvent.SYSTEM_STATUS, ("global", None)),
]


@pytest.mark.parametrize(("frame", "event_type", "route"), GOLDEN)
def test_legacy_frames_round_trip_exactly(frame: dict, event_type: ChatEvent, route: tuple) -> None:
    translated = TABLE.to_event(frame)
    assert translated is not None
    assert translated[0] == event_type
    legacy_route = TABLE.legacy_route(*translated)
    back = TABLE.legacy_frame(*translated)
    assert back == frame
    assert encode(back) == encode(frame)  # byte-identical, key order included
    assert (legacy_route.scope, legacy_route.target_id) == route


@pytest.mark.parametrize(("frame", "event_type", "route"), GOLDEN)
def test_the_legacy_route_is_one_of_the_events_unified_topics(frame: dict, event_type: ChatEvent,
                                                              route: tuple) -> None:
    translated = TABLE.to_event(frame)
    assert translated is not None
    event = CHAT.create(*translated)
    assert TABLE.topic_of(TABLE.legacy_route(*translated)) in CHAT.delivery_topics(event)


def test_every_event_type_has_exactly_one_frame() -> None:
    assert set(TABLE.event_types) == set(CHAT.names)
    assert len(TABLE.translations) == len(CHAT.names)


def test_unknown_frames_are_not_translated() -> None:
    assert TABLE.to_event({"type": "typing_indicator", "thread_id": 1}) is None
    assert TABLE.to_event({"thread_id": 1}) is None


def test_a_nested_frame_without_its_object_is_a_translation_error() -> None:
    with pytest.raises(TranslationError):
        TABLE.to_event({"type": "thread_message", "thread_id": 1, "message": "not an object"})


BOARD = "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"


def boards_table() -> TranslationTable:
    table = TranslationTable(scopes={"board": "board:{id}"}, global_topic="announcements")
    table.add(nested("task_added", "task_created", key="task", scope="board", target="board_id",
                     outer=("board_id",)))
    table.add(flat("task_moved", scope="board", target="board_id"))
    table.add(legacy_only("typing", scope="board"))
    return table


def test_builders_for_another_apps_frames_with_uuid_targets() -> None:
    table = boards_table()
    frame = {"type": "task_added", "board_id": BOARD, "task": {"id": "t1", "board_id": BOARD, "title": "x"}}
    assert table.to_event(frame) == ("task_created", {"id": "t1", "board_id": BOARD, "title": "x"})
    assert table.legacy_frame("task_created", frame["task"]) == frame
    assert table.legacy_route("task_created", frame["task"]) == LegacyRoute("board", BOARD)
    assert table.topic_of(LegacyRoute("board", BOARD)) == f"board:{BOARD}"
    moved = {"type": "task_moved", "board_id": BOARD, "id": "t1", "column": "done"}
    assert table.legacy_frame(*table.to_event(moved)) == moved  # type: ignore[misc]
    assert table.to_event({"type": "typing", "board_id": BOARD}) is None  # legacy-only: never an event
    assert table.legacy_only_frames == ("typing",)
    assert table.event_types == ("task_created", "task_moved")


def test_table_declaration_errors() -> None:
    table = boards_table()
    with pytest.raises(ValueError, match="twice"):
        table.add(flat("task_moved", scope="board", target="board_id"))
    with pytest.raises(ValueError, match="unknown legacy scope"):
        table.add(flat("column_added", scope="column", target="column_id"))
    with pytest.raises(ValueError, match="at most one"):
        TranslationTable(scopes={"board": "board:{id}:{id}"}, global_topic="x")


def test_an_event_without_its_target_has_no_legacy_route() -> None:
    with pytest.raises(TranslationError):
        boards_table().legacy_route("task_moved", {"id": "t1"})
    with pytest.raises(TranslationError):
        boards_table().legacy_route("task_moved", {"board_id": True})


def test_a_table_without_global_broadcasts_needs_no_global_topic() -> None:
    table = TranslationTable(scopes={"plant": "plant:{id}"})
    table.add(flat("plant_watered", scope="plant", target="plant_id"))
    assert table.topic_of(table.legacy_route("plant_watered", {"plant_id": 3})) == "plant:3"
    with pytest.raises(ValueError, match="global_topic"):
        table.add(flat("maintenance", scope="global"))
