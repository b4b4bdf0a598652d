"""The boards example: a project-management app (UUID ids, SQLite, its own auth) with wsmigrate
mounted into it. It shares nothing with the chat example but wsmigrate's public API.

    make run APP=boards        (or: wsmigrate serve --app examples.boards.app:app_from_env)

Legacy sockets: `/ws/board/{board_id}`; unified topics `board:{uuid}`, `task:{uuid}`, `boards`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from examples.boards import api
from examples.boards.access import BoardAccess
from examples.boards.db import Board, Database
from examples.boards.declaration import boards_catalog, boards_legacy_protocol, boards_translations
from examples.boards.legacy_manager import BoardConnectionManager
from examples.boards.members import Members
from examples.boards.schemas import TaskOut
from wsmigrate import Access, Declaration, EnvSettings, Frame, Settings, TargetId, WsMigrate

log = logging.getLogger(__name__)


class BoardsSettings(EnvSettings):
    """The boards app's own settings, from the same `WSMIGRATE_*` environment as wsmigrate's."""

    database_url: str = "sqlite:///./boards.db"
    demo_token: str = ""


class BoardStore:
    """The legacy socket's seam to the app: access and the opening snapshot."""

    def __init__(self, db: Database, access: BoardAccess) -> None:
        self.db = db
        self.rules = access

    async def access(self, scope: str, target_id: TargetId, user_id: str | None) -> Access:
        return await self.rules.access(scope, target_id, user_id)

    def _snapshot(self, board_id: str) -> Frame | None:
        with self.db.session() as session:
            board = session.get(Board, board_id)
            if board is None:
                return None
            return {"type": "board_snapshot", "board_id": board.id, "name": board.name,
                    "tasks": [TaskOut.of(t).model_dump() for t in board.tasks]}

    async def snapshot(self, board_id: str) -> Frame | None:
        return await run_in_threadpool(self._snapshot, board_id)


@dataclass
class BoardsApp:
    settings: BoardsSettings
    db: Database
    members: Members
    manager: BoardConnectionManager
    wsmigrate: WsMigrate


def create_app(settings: Settings | None = None, boards_settings: BoardsSettings | None = None, *,
               registry: CollectorRegistry | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    own = boards_settings or BoardsSettings.from_env()
    db = Database(own.database_url)
    members = Members(db, enabled=settings.auth)
    access = BoardAccess(db)
    declaration = Declaration(catalog=boards_catalog(), translations=boards_translations(),
                              legacy=boards_legacy_protocol(BoardStore(db, access)), authorize=access.authorize)
    wsm = WsMigrate(declaration, settings, authenticate=members.member_id, registry=registry, outbox=db.outbox)
    boards = BoardsApp(own, db, members, BoardConnectionManager(wsm.hub), wsm)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(db.create_all)
        if own.demo_token:
            await run_in_threadpool(members.ensure, "demo", own.demo_token)
            log.warning("demo member 'demo', token %s", own.demo_token)
        try:
            yield
        finally:
            db.dispose()

    app = FastAPI(title="wsmigrate boards example", lifespan=lifespan)
    app.state.boards = boards
    app.include_router(api.router)
    wsm.install(app)
    return app


def app_from_env() -> FastAPI:
    return create_app()
