"""The boards app's declaration: what it tells wsmigrate about its events, topics and old sockets.

| event type      | topics (primary first)                | legacy frame (on `/ws/board/{board_id}`)           |
|-----------------|---------------------------------------|----------------------------------------------------|
| `board_created` | `boards` (the owner's only)           | none: the old app had no socket for the board list |
| `task_created`  | `board:{board_id}`, `task:{id}`       | `task_added`: `board_id` and the task nested       |
| `task_moved`    | `board:{board_id}`, `task:{id}`       | `task_moved`: the task's fields, flat              |
| `comment_added` | `task:{task_id}`, `board:{board_id}`  | `comment_added`: `board_id`, `task_id`, the comment nested |

`cursor` frames (another member's pointer on the board) never became an event: they are
`legacy_only`, delivered the old way and listed by `wsmigrate report` until the feature is rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from wsmigrate import (
    Access,
    EventCatalog,
    Frame,
    LegacyCommand,
    LegacyContext,
    LegacyProtocol,
    LegacyView,
    TargetId,
    TranslationTable,
    flat,
    legacy_only,
    nested,
)


def boards_catalog() -> EventCatalog:
    catalog = EventCatalog(topics=["board:{board_id:uuid}", "task:{task_id:uuid}", "boards"])
    catalog.event("board_created", topics=["boards"], audience="owner_id")
    catalog.event("task_created", topics=["board:{board_id}", "task:{id}"])
    catalog.event("task_moved", topics=["board:{board_id}", "task:{id}"])
    catalog.event("comment_added", topics=["task:{task_id}", "board:{board_id}"])
    return catalog


def boards_translations() -> TranslationTable:
    table = TranslationTable(scopes={"board": "board:{id}"}, global_topic="boards")
    table.add(nested("task_added", "task_created", key="task", scope="board", target="board_id", outer=("board_id",)))
    table.add(flat("task_moved", scope="board", target="board_id"))
    table.add(nested("comment_added", "comment_added", key="comment", scope="board", target="board_id",
                     outer=("board_id", "task_id")))
    table.add(legacy_only("cursor", scope="board"))
    return table


# -- the old sockets ------------------------------------------------------------------------------


class MoveCursor(BaseModel):
    """The one command the old board socket accepted: the member's pointer moved."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["move_cursor"]
    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)


class BoardStore(Protocol):
    async def access(self, scope: str, target_id: TargetId, user_id: str | None) -> Access: ...

    async def snapshot(self, board_id: str) -> Frame | None: ...


def boards_legacy_protocol(store: BoardStore) -> LegacyProtocol:
    """`/ws/board/{board_id}`: a `board_snapshot` first, then the board's frames."""

    async def open_board(board_id: TargetId, user_id: str | None) -> Sequence[Frame] | None:
        snapshot = await store.snapshot(str(board_id))
        return None if snapshot is None else [snapshot]

    async def move_cursor(context: LegacyContext, frame: MoveCursor) -> None:
        for scope, board_id in list(context.hub.follows_of(context.client_id)):
            await context.hub.broadcast(scope, board_id, {"type": "cursor", "board_id": board_id,
                                                          "member": context.user_id, "x": frame.x, "y": frame.y})

    return LegacyProtocol(
        views=[LegacyView(kind="legacy_board", scope="board", path="/ws/board/{board_id}", param="board_id",
                          id_type="uuid", on_open=open_board)],
        access=store.access,
        commands=[LegacyCommand("move_cursor", MoveCursor, move_cursor)],
        error_frame=lambda text, message_id, details: {"type": "error", "error": text},
    )
