"""The chat app's declaration: its event types, topics, legacy frames and legacy sockets.

This is what any application writes to adopt wsmigrate (docs/migration-guide.md); the chat app's
own code uses `ChatEvent`, its `StrEnum`, wherever it names an event type.

| event types                                                           | topics                        |
|-----------------------------------------------------------------------|-------------------------------|
| agent_created, agent_updated, agent_deleted, agent_status_changed     | `agent:{id}`, `agents`        |
| thread_created, thread_updated, thread_deleted                        | `thread:{id}`, `agent:{agent_id}` |
| message_created, stream_start, stream_chunk, stream_end, stream_error | `thread:{thread_id}`          |
| system_status                                                         | `system`                      |

Agent events reach only the agent's owner (`owner_id`), also on the shared `agents` topic.

The old app broadcast thread content to a thread's sockets, agent and thread events to the agent's
sockets, and `system_status` to every socket; every frame is flat except `thread_message`, which
nests the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from examples.chat import legacy_frames as frames
from wsmigrate import (
    Access,
    EventCatalog,
    Frame,
    LegacyCommand,
    LegacyContext,
    LegacyProtocol,
    LegacyProtocolError,
    LegacyView,
    TargetId,
    TranslationTable,
    flat,
    nested,
)


class ChatEvent(StrEnum):
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


AGENT_EVENTS = (ChatEvent.AGENT_CREATED, ChatEvent.AGENT_UPDATED, ChatEvent.AGENT_DELETED,
                ChatEvent.AGENT_STATUS_CHANGED)
THREAD_EVENTS = (ChatEvent.THREAD_CREATED, ChatEvent.THREAD_UPDATED, ChatEvent.THREAD_DELETED)
THREAD_CONTENT_EVENTS = (ChatEvent.MESSAGE_CREATED, ChatEvent.STREAM_START, ChatEvent.STREAM_CHUNK,
                         ChatEvent.STREAM_END, ChatEvent.STREAM_ERROR)


def chat_catalog() -> EventCatalog:
    """A fresh catalogue of the chat app (each server builds its own)."""
    catalog = EventCatalog(topics=["agents", "system", "agent:{agent_id:int}", "thread:{thread_id:int}"])
    for event_type in AGENT_EVENTS:
        catalog.event(event_type, topics=["agent:{id|agent_id}", "agents"], audience="owner_id")
    for event_type in THREAD_EVENTS:
        catalog.event(event_type, topics=["thread:{id|thread_id}", "agent:{agent_id}"])
    for event_type in THREAD_CONTENT_EVENTS:
        catalog.event(event_type, topics=["thread:{thread_id}"])
    catalog.event(ChatEvent.SYSTEM_STATUS, topics=["system"])
    return catalog


def chat_translations() -> TranslationTable:
    """The chat app's legacy frames and the events they carry."""
    table = TranslationTable(scopes={"thread": "thread:{id}", "agent": "agent:{id}"}, global_topic="system")
    table.add(nested("thread_message", ChatEvent.MESSAGE_CREATED, key="message", scope="thread",
                     target="thread_id", outer=("thread_id",)))
    for event_type in THREAD_CONTENT_EVENTS[1:]:
        table.add(flat(event_type.value, event_type, scope="thread", target="thread_id"))
    for event_type in AGENT_EVENTS:
        table.add(flat(event_type.value, event_type, scope="agent", target=("agent_id", "id")))
    for event_type in THREAD_EVENTS:
        table.add(flat(event_type.value, event_type, scope="agent", target="agent_id"))
    table.add(flat(ChatEvent.SYSTEM_STATUS.value, ChatEvent.SYSTEM_STATUS, scope="global"))
    return table


class ChatStore(Protocol):
    """What the chat app's legacy sockets need from the rest of the app."""

    async def access(self, scope: str, target_id: TargetId, user_id: str | None) -> Access: ...

    async def thread_history(self, thread_id: int) -> list[dict[str, object]] | None: ...

    async def add_message(self, thread_id: int, content: str) -> dict[str, object] | None: ...


def chat_legacy_protocol(store: ChatStore) -> LegacyProtocol:
    """The old sockets: `/api/ws?thread_id=45` (chat view, answered with `thread_history` first) and
    `/api/ws?agent_id=7` (dashboard view); commands `subscribe_thread`, `send_message`, `ping`."""

    async def open_thread(thread_id: TargetId, user_id: str | None) -> Sequence[Frame] | None:
        assert isinstance(thread_id, int)
        history = await store.thread_history(thread_id)
        return None if history is None else [frames.thread_history(thread_id, history)]

    async def ping(context: LegacyContext, frame: frames.Ping) -> None:
        context.reply(frames.pong(frame.timestamp))

    async def subscribe_thread(context: LegacyContext, frame: frames.SubscribeThread) -> None:
        context.throttle()
        await context.require("thread", frame.thread_id)
        history = await store.thread_history(frame.thread_id)
        if history is None:
            raise LegacyProtocolError(f"Thread {frame.thread_id} not found")
        context.follow("thread", frame.thread_id)
        context.reply(frames.thread_history(frame.thread_id, history))

    async def send_message(context: LegacyContext, frame: frames.SendMessage) -> None:
        await context.require("thread", frame.thread_id)
        message = await store.add_message(frame.thread_id, frame.content)  # stored with its event
        if message is None:
            raise LegacyProtocolError(f"Thread {frame.thread_id} not found")

    return LegacyProtocol(
        views=[
            LegacyView(kind="legacy_thread", scope="thread", path="/api/ws", param="thread_id", on_open=open_thread),
            LegacyView(kind="legacy_agent", scope="agent", path="/api/ws", param="agent_id"),
        ],
        access=store.access,
        commands=[
            LegacyCommand("ping", frames.Ping, ping),
            LegacyCommand("subscribe_thread", frames.SubscribeThread, subscribe_thread),
            LegacyCommand("send_message", frames.SendMessage, send_message),
        ],
    )
