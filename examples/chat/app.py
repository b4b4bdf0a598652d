"""The chat example: a FastAPI app (agents, threads, messages, streamed replies) half-way through
its migration, with wsmigrate mounted into it.

    uvicorn --factory examples.chat.app:app_from_env     (or `make run`, which adds the demo settings)

Agent and thread CRUD publish with `@publish_event` and messages are stored with their event,
both through wsmigrate's transactional outbox; streamed runs still call the old manager's
`broadcast_to_thread` (examples/chat/legacy_manager.py), which delegates to wsmigrate's legacy hub.
Pages: `/` (the app on one socket), `/legacy` (the same app, a socket per view), and wsmigrate's
`/ops`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from examples.chat import api
from examples.chat.authorizer import ChatAuthorizer
from examples.chat.db import Database
from examples.chat.declaration import chat_catalog, chat_legacy_protocol, chat_translations
from examples.chat.legacy_manager import ConnectionManager
from examples.chat.ownership import Ownership
from examples.chat.service import ChatService, LegacyCallSites, Messages, ThreadNotFoundError
from examples.chat.users import Authenticator
from wsmigrate import Access, Declaration, EnvSettings, Settings, TargetId, WsMigrate

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SHUTDOWN_GRACE_S = 5.0


class ChatSettings(EnvSettings):
    """The chat app's own settings, read from the same `WSMIGRATE_*` environment as wsmigrate's."""

    database_url: str = "sqlite:///./wsmigrate.db"
    ownership_cache_ttl_s: float = Field(30.0, ge=0)  # examples/chat/ownership.py; 0: ask the database each time
    stream_delay_ms: float = Field(15.0, ge=0)
    stream_chunks: int = Field(24, ge=1, le=100_000)
    demo_token: str = ""  # a demo user with this token is created at start
    dev_mode: bool = False  # `/api/dev/session` hands the demo token to the demo pages


class ChatStore:
    """The legacy sockets' seam to the app (`declaration.ChatStore`): access, history, new messages."""

    def __init__(self, ownership: Ownership, messages: Messages) -> None:
        self.ownership = ownership
        self.messages = messages

    async def access(self, scope: str, target_id: TargetId, user_id: str | None) -> Access:
        if scope not in ("thread", "agent") or not isinstance(target_id, int):
            return "not_found"
        return await self.ownership.access("thread" if scope == "thread" else "agent", target_id, user_id)

    async def thread_history(self, thread_id: int) -> list[dict[str, object]] | None:
        history = await run_in_threadpool(self.messages.history, thread_id)
        return None if history is None else [m.model_dump() for m in history]

    async def add_message(self, thread_id: int, content: str) -> dict[str, object] | None:
        try:
            message = await run_in_threadpool(self.messages.store, thread_id, "user", content)
        except ThreadNotFoundError:
            return None
        return message.model_dump()


@dataclass
class ChatApp:
    """The chat app's own components (wsmigrate's are on `WsMigrate`)."""

    settings: ChatSettings
    db: Database
    ownership: Ownership
    users: Authenticator
    manager: ConnectionManager
    service: ChatService
    wsmigrate: WsMigrate


def create_app(settings: Settings | None = None, chat_settings: ChatSettings | None = None, *,
               registry: CollectorRegistry | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    chat_settings = chat_settings or ChatSettings.from_env()
    db = Database(chat_settings.database_url)
    users = Authenticator(db, enabled=settings.auth)
    ownership = Ownership(db, ttl_s=chat_settings.ownership_cache_ttl_s)

    catalog = chat_catalog()
    declaration = Declaration(catalog=catalog, translations=chat_translations(),
                              legacy=chat_legacy_protocol(ChatStore(ownership, Messages(db, catalog))),
                              authorize=ChatAuthorizer(ownership).authorize)
    wsm = WsMigrate(declaration, settings, authenticate=users.user_id, unified_paths=("/api/ws", "/api/ws/v2"),
                    registry=registry, outbox=db.outbox)
    # deletions reach the access cache at once, wherever they were published
    wsm.bus.attach(ownership.on_publication, interest=ownership.needs, event_types=Ownership.DELETIONS)
    manager = ConnectionManager(wsm.hub)  # the old manager, its bodies delegating to wsmigrate's hub
    service = ChatService(db, catalog, LegacyCallSites(manager), chunks=chat_settings.stream_chunks,
                          delay_ms=chat_settings.stream_delay_ms)
    chat = ChatApp(chat_settings, db, ownership, users, manager, service, wsm)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(db.create_all)
        if chat_settings.demo_token:
            await run_in_threadpool(users.ensure_user, "demo", chat_settings.demo_token)
            log.warning("demo user 'demo', token %s", chat_settings.demo_token)
        try:
            yield
        finally:
            await chat.service.wait_idle(SHUTDOWN_GRACE_S)
            db.dispose()

    app = FastAPI(title="wsmigrate chat example", lifespan=lifespan)
    app.state.chat = chat
    app.include_router(api.router)
    install_pages(app, chat_settings, settings)
    wsm.install(app, static_dir=STATIC_DIR)
    return app


def install_pages(app: FastAPI, chat_settings: ChatSettings, settings: Settings) -> None:
    """`/` (app.html on one wsClient), `/legacy` (legacy.html, a socket per view), and the dev session."""
    no_cache = {"Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    async def app_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "app.html", media_type="text/html; charset=utf-8", headers=no_cache)

    @app.get("/legacy", include_in_schema=False)
    async def legacy_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "legacy.html", media_type="text/html; charset=utf-8", headers=no_cache)

    @app.get("/api/dev/session")
    async def dev_session() -> JSONResponse:
        """Development only: the demo user's token, so the demo pages can sign in by themselves."""
        if not (chat_settings.dev_mode and chat_settings.demo_token):
            return JSONResponse({"detail": "not available: development mode is off"}, status_code=404)
        return JSONResponse({"user": "demo", "token": chat_settings.demo_token, "auth": settings.auth})


def app_from_env() -> FastAPI:
    """Factory used by `wsmigrate serve` (and each uvicorn worker): settings from the environment."""
    return create_app()
