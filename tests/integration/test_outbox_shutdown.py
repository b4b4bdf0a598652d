"""An application that disposes its SQLAlchemy engine in its own lifespan teardown, with the
transactional outbox's relay reading that engine in a worker thread at that moment. wsmigrate must
be done with the engine (thread calls included) before the teardown runs: on an in-memory SQLite,
whose one connection every thread shares, a query under a disposed pool crashed the interpreter
(the boards example's start and stop, about once in six)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from wsmigrate import (
    Declaration,
    EventCatalog,
    LegacyProtocol,
    LegacyView,
    Settings,
    TransactionalOutbox,
    TranslationTable,
    WsMigrate,
    flat,
)
from wsmigrate.unified.transactional_outbox import StagedEvent

TIMEOUT_S = 10.0


class WatchedOutbox(TransactionalOutbox):
    """Counts the table calls running; once armed, the next read waits for `release`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.running = 0
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def pending(self, limit: int, *, committed_before_ms: int | None = None) -> list[StagedEvent]:
        self.running += 1
        try:
            if self.armed:
                self.entered.set()
                self.release.wait(TIMEOUT_S)
            return super().pending(limit, committed_before_ms=committed_before_ms)
        finally:
            self.running -= 1


async def test_the_relay_is_done_with_the_engine_before_the_applications_teardown_disposes_it() -> None:
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    outbox = WatchedOutbox(engine)
    catalog = EventCatalog(topics=["lamp:{lamp_id:int}"])
    catalog.event("lamp_switched", topics=["lamp:{id}"])
    translations = TranslationTable(scopes={"lamp": "lamp:{id}"})
    translations.add(flat("lamp_switched", "lamp_switched", scope="lamp", target="id"))

    async def access(scope: str, lamp_id: object, user_id: str | None) -> str:
        return "ok"

    legacy = LegacyProtocol(views=[LegacyView(kind="legacy_lamp", scope="lamp", path="/api/ws", param="lamp_id")],
                            access=access)  # type: ignore[arg-type]
    settings = Settings.from_env({}, auth=False, relay_sweep_interval_s=0.05)
    wsm = WsMigrate(Declaration(catalog=catalog, translations=translations, legacy=legacy), settings, outbox=outbox)
    at_teardown: list[int] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        at_teardown.append(outbox.running)  # what still uses the engine when the app disposes it
        engine.dispose()

    app = FastAPI(lifespan=lifespan)
    wsm.install(app)
    context = app.router.lifespan_context(app)
    await context.__aenter__()
    outbox.armed = True
    assert await asyncio.to_thread(outbox.entered.wait, TIMEOUT_S)  # a sweep's read is in its thread now
    stopping = asyncio.create_task(context.__aexit__(None, None, None))
    done, _ = await asyncio.wait({stopping}, timeout=0.2)  # bounded: the stop must wait for the read
    assert not done
    assert at_teardown == []  # the application's teardown has not run under the read
    outbox.release.set()
    await asyncio.wait_for(stopping, TIMEOUT_S)
    assert at_teardown == [0]


