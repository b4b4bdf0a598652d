"""Who may see what on the boards app: a board and its tasks belong to the board's owner.

One rule for every door: wsmigrate's `authorize` hook (all the topics of one subscribe frame, in
one query per kind), the legacy socket's access check, and the REST routes. With auth off
(`user_id` None) and for boards created with auth off (no owner), everyone may.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from examples.boards.db import Board, Database, Task
from wsmigrate import Access, TargetId, Topic, Verdict


def _verdict(found: bool, owner: str | None, user_id: str | None) -> Access:
    if not found:
        return "not_found"
    return "ok" if user_id is None or owner is None or owner == user_id else "forbidden"


class BoardAccess:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _owners(self, boards: Sequence[str], tasks: Sequence[str]) -> tuple[dict[str, str | None],
                                                                               dict[str, str | None]]:
        """(board id -> owner, task id -> its board's owner) of those that exist."""
        with self.db.session() as session:
            board_owners: dict[str, str | None] = {}
            task_owners: dict[str, str | None] = {}
            if boards:
                for board_id, owner in session.execute(select(Board.id, Board.owner_id).where(Board.id.in_(boards))):
                    board_owners[board_id] = owner
            if tasks:
                query = select(Task.id, Board.owner_id).join(Board, Task.board_id == Board.id).where(Task.id.in_(tasks))
                for task_id, owner in session.execute(query):
                    task_owners[task_id] = owner
            return board_owners, task_owners

    async def access(self, scope: str, target_id: TargetId, user_id: str | None) -> Access:
        """The legacy socket's rule (scope `board`)."""
        if scope != "board":
            return "not_found"
        owners, _ = await run_in_threadpool(self._owners, [str(target_id)], [])
        return _verdict(str(target_id) in owners, owners.get(str(target_id)), user_id)

    async def authorize(self, user_id: str | None, topics: Sequence[Topic]) -> Mapping[str, Verdict]:
        """wsmigrate's `authorize` hook: `boards` is everyone's (events carry their audience)."""
        boards = {t.name: str(t.params["board_id"]) for t in topics if "board_id" in t.params}
        tasks = {t.name: str(t.params["task_id"]) for t in topics if "task_id" in t.params}
        board_owners, task_owners = await run_in_threadpool(self._owners, list(boards.values()), list(tasks.values()))
        verdicts: dict[str, Verdict] = {t.name: "allow" for t in topics if not t.params}
        for name, board_id in boards.items():
            verdicts[name] = _as_verdict(_verdict(board_id in board_owners, board_owners.get(board_id), user_id))
        for name, task_id in tasks.items():
            verdicts[name] = _as_verdict(_verdict(task_id in task_owners, task_owners.get(task_id), user_id))
        return verdicts


def _as_verdict(access: Access) -> Verdict:
    return "allow" if access == "ok" else access
