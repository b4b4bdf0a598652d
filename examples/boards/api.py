"""REST API of the boards app, half-way through its migration.

Migrated call sites announce with `@publish_event(..., session="db")` (creating a board, moving a
task): the route flushes, and the decorator commits the change with its event (wsmigrate's
transactional outbox), so neither is ever stored without the other. The others still call the
old manager's `broadcast_to_board` with the old frames (adding a task, commenting), which
wsmigrate mirrors onto the bus for unified clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from examples.boards.db import Board, Comment, Task
from examples.boards.schemas import BoardIn, BoardOut, BoardWithTasks, CommentIn, CommentOut, TaskIn, TaskOut, TaskPatch
from wsmigrate import Positions, publish_event, topic_positions

if TYPE_CHECKING:
    from examples.boards.app import BoardsApp

router = APIRouter(prefix="/api")


def boards_of(request: Request) -> BoardsApp:
    return request.app.state.boards  # type: ignore[no-any-return]


def db_session(request: Request) -> Iterator[Session]:
    with boards_of(request).db.session() as session:
        yield session


async def current_member(request: Request) -> str | None:
    """The member's id; None when auth is off. REST takes a bearer token or the cookie."""
    members = boards_of(request).members
    if not members.enabled:
        return None
    member = await members.member_id(request, allow_query=False)
    if member is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication required",
                            headers={"WWW-Authenticate": "Bearer"})
    return member


DB = Annotated[Session, Depends(db_session)]
MemberId = Annotated[str | None, Depends(current_member)]


def _board(db: Session, board_id: str, member: str | None) -> Board:
    """The board, or 404 when it does not exist or is someone else's (no existence leak)."""
    board = db.get(Board, board_id)
    if board is None or not (member is None or board.owner_id is None or board.owner_id == member):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Board {board_id} not found")
    return board


def _task(db: Session, task_id: str, member: str | None) -> Task:
    task = db.get(Task, task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Task {task_id} not found")
    _board(db, task.board_id, member)
    return task


@router.get("/boards")
def list_boards(db: DB, member: MemberId) -> list[BoardOut]:
    query = select(Board).order_by(Board.name)
    if member is not None:
        query = query.where(Board.owner_id == member)
    return [BoardOut.of(b) for b in db.scalars(query)]


@router.post("/boards", status_code=status.HTTP_201_CREATED)
@publish_event("board_created", session="db")
def create_board(body: BoardIn, db: DB, member: MemberId) -> BoardOut:
    board = Board(name=body.name, owner_id=member)
    db.add(board)
    db.flush()
    return BoardOut.of(board)


@router.get("/boards/{board_id}")
def get_board(board_id: str, db: DB, member: MemberId,
              positions: Annotated[Positions, Depends(topic_positions("board:{board_id}"))]) -> BoardWithTasks:
    """A board with its tasks, and the position of `board:{id}` read before them: a view subscribes
    `since` it and misses nothing that happened after the read (docs/protocol.md, "Snapshots")."""
    board = _board(db, board_id, member)
    return BoardWithTasks(**BoardOut.of(board).model_dump(), tasks=[TaskOut.of(t) for t in board.tasks],
                          positions=positions)


@router.post("/boards/{board_id}/tasks", status_code=status.HTTP_201_CREATED)
async def add_task(board_id: str, body: TaskIn, request: Request, member: MemberId) -> TaskOut:
    app = boards_of(request)
    with app.db.session() as db:  # the old call site: commit, then the old manager's broadcast
        _board(db, board_id, member)
        position = db.scalar(select(func.count()).select_from(Task).where(Task.board_id == board_id)) or 0
        task = Task(board_id=board_id, title=body.title, column="todo", position=position)
        db.add(task)
        db.commit()
        out = TaskOut.of(task)
    await app.manager.broadcast_to_board(board_id, {"type": "task_added", "board_id": board_id,
                                                    "task": out.model_dump()})
    return out


@router.patch("/tasks/{task_id}")
@publish_event("task_moved", session="db")
def move_task(task_id: str, body: TaskPatch, db: DB, member: MemberId) -> TaskOut:
    task = _task(db, task_id, member)
    task.column = body.column
    db.flush()
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/comments", status_code=status.HTTP_201_CREATED)
async def add_comment(task_id: str, body: CommentIn, request: Request, member: MemberId) -> CommentOut:
    app = boards_of(request)
    with app.db.session() as db:
        task = _task(db, task_id, member)
        comment = Comment(task_id=task.id, body=body.body)
        db.add(comment)
        db.commit()
        out = CommentOut.of(comment, task.board_id)
    await app.manager.broadcast_to_board(out.board_id, {"type": "comment_added", "board_id": out.board_id,
                                                        "task_id": out.task_id, "comment": out.model_dump()})
    return out
