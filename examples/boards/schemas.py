"""Request and response models of the boards app's REST API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from examples.boards.db import Board, Comment, Task
from wsmigrate import Positions

Column = Literal["todo", "doing", "done"]


class BoardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class BoardOut(BaseModel):
    id: str
    name: str
    owner_id: str | None

    @classmethod
    def of(cls, board: Board) -> BoardOut:
        return cls(id=board.id, name=board.name, owner_id=board.owner_id)


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=500)


class TaskPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: Column


class TaskOut(BaseModel):
    id: str
    board_id: str
    title: str
    column: str

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls(id=task.id, board_id=task.board_id, title=task.title, column=task.column)


class BoardWithTasks(BoardOut):
    tasks: list[TaskOut]
    positions: Positions


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=10_000)


class CommentOut(BaseModel):
    id: str
    task_id: str
    board_id: str
    body: str
    created_at: str

    @classmethod
    def of(cls, comment: Comment, board_id: str) -> CommentOut:
        return cls(id=comment.id, task_id=comment.task_id, board_id=board_id, body=comment.body,
                   created_at=comment.created_at)
