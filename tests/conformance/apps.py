"""The two example apps behind one interface, so the conformance suite runs unchanged on both.

An `ExampleApp` starts its server and sets up a `Scene`: a resource with a legacy view and a
unified topic, and per origin (`legacy_call`: the app's old manager; `bus`: `@publish_event`) a
`Case` that raises one event and says how to recognise it in either protocol's frames.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from examples.boards.app import BoardsSettings
from examples.boards.app import create_app as create_boards
from examples.chat.app import ChatSettings
from examples.chat.app import create_app as create_chat
from tests.ports import bind_free_port
from tests.support import RunningServer, rest, split_settings
from wsmigrate import Settings

Key = Any
ORIGINS = ("legacy_call", "bus")


@dataclass
class Case:
    """One way of raising events of `event_type` that a legacy view and a unified topic both see."""

    event_type: str
    legacy_path: str  # the legacy view, path and query
    topic: str  # the unified topic
    opening: int  # frames the legacy view sends first (a history), skipped
    trigger: Callable[[int], Awaitable[Key]]  # raise the n-th event; returns its key
    legacy_key: Callable[[dict[str, Any]], Key | None]  # the key of a legacy frame, None: not this case's
    unified_key: Callable[[dict[str, Any]], Key | None]


class ExampleApp(Protocol):
    name: str

    def create(self, tmp_path: Path, index: int, overrides: dict[str, Any]) -> FastAPI: ...

    async def scene(self, server: RunningServer, events: int) -> dict[str, Case]: ...


class Chat:
    name = "chat"

    def create(self, tmp_path: Path, index: int, overrides: dict[str, Any]) -> FastAPI:
        overrides.setdefault("database_url", f"sqlite:///{tmp_path}/chat-{index}.db")
        overrides.setdefault("stream_delay_ms", 0)
        ours, own = split_settings(ChatSettings, overrides)
        return create_chat(Settings.from_env({}, **ours), ChatSettings.from_env({}, **own),
                           registry=CollectorRegistry())

    async def scene(self, server: RunningServer, events: int) -> dict[str, Case]:
        agent = await rest(server, "POST", "/api/agents", {"name": "a-0"})
        thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"], "title": "t"})

        async def message(n: int) -> Key:  # an old call site: ChatService -> broadcast_to_thread
            posted = await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": f"m{n}"})
            return posted["id"]

        async def rename(n: int) -> Key:  # a migrated route: @publish_event(agent_updated)
            await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": f"a-{n + 1}"})
            return f"a-{n + 1}"

        def frame_message(f: dict[str, Any]) -> Key | None:
            return f["message"]["id"] if f.get("type") == "thread_message" else None

        def event_message(f: dict[str, Any]) -> Key | None:
            return f["data"]["id"] if f.get("type") == "message_created" else None

        def frame_agent(f: dict[str, Any]) -> Key | None:
            return f["name"] if f.get("type") == "agent_updated" else None

        def event_agent(f: dict[str, Any]) -> Key | None:
            return f["data"]["name"] if f.get("type") == "agent_updated" else None

        return {
            "legacy_call": Case("message_created", f"/api/ws?thread_id={thread['id']}", f"thread:{thread['id']}", 1,
                                message, frame_message, event_message),
            "bus": Case("agent_updated", f"/api/ws?agent_id={agent['id']}", f"agent:{agent['id']}", 0,
                        rename, frame_agent, event_agent),
        }


class Boards:
    name = "boards"

    def create(self, tmp_path: Path, index: int, overrides: dict[str, Any]) -> FastAPI:
        overrides.setdefault("database_url", f"sqlite:///{tmp_path}/boards-{index}.db")
        ours, own = split_settings(BoardsSettings, overrides)
        return create_boards(Settings.from_env({}, **ours), BoardsSettings.from_env({}, **own),
                             registry=CollectorRegistry())

    async def scene(self, server: RunningServer, events: int) -> dict[str, Case]:
        board = await rest(server, "POST", "/api/boards", {"name": "b"})
        # tasks to move later, made before any client connects (their task_created is not counted)
        movable = [await rest(server, "POST", f"/api/boards/{board['id']}/tasks", {"title": f"pre {n}"})
                   for n in range(events + 2)]

        async def add(n: int) -> Key:  # an old call site: broadcast_to_board(task_added)
            return (await rest(server, "POST", f"/api/boards/{board['id']}/tasks", {"title": f"t{n}"}))["id"]

        async def move(n: int) -> Key:  # a migrated route: @publish_event(task_moved)
            return (await rest(server, "PATCH", f"/api/tasks/{movable[n]['id']}", {"column": "doing"}))["id"]

        def frame_added(f: dict[str, Any]) -> Key | None:
            return f["task"]["id"] if f.get("type") == "task_added" else None

        def event_added(f: dict[str, Any]) -> Key | None:
            return f["data"]["id"] if f.get("type") == "task_created" else None

        def frame_moved(f: dict[str, Any]) -> Key | None:
            return f["id"] if f.get("type") == "task_moved" else None

        def event_moved(f: dict[str, Any]) -> Key | None:
            return f["data"]["id"] if f.get("type") == "task_moved" else None

        view, topic = f"/ws/board/{board['id']}", f"board:{board['id']}"
        return {
            "legacy_call": Case("task_created", view, topic, 1, add, frame_added, event_added),
            "bus": Case("task_moved", view, topic, 1, move, frame_moved, event_moved),
        }


EXAMPLES: dict[str, ExampleApp] = {"chat": Chat(), "boards": Boards()}


def start(example: ExampleApp, tmp_path: Path, index: int, **overrides: Any) -> RunningServer:
    """A real server of `example` on a free loopback port (auth off unless asked)."""
    overrides.setdefault("auth", False)
    overrides.setdefault("heartbeat_interval_s", 3600)
    sock = bind_free_port()
    overrides.setdefault("self_url", f"http://127.0.0.1:{sock.getsockname()[1]}")
    return RunningServer(example.create(tmp_path, index, overrides), sock).start()
