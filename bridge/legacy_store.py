"""The reference application's side of the legacy seam: history and message storage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from bridge.chat import ChatService, ThreadNotFoundError
from bridge.db import Agent, Database


class DatabaseLegacyStore:
    """`legacy.store.LegacyStore` over the reference app's database."""

    def __init__(self, db: Database, chat: ChatService) -> None:
        self.db = db
        self.chat = chat

    async def thread_history(self, thread_id: int, user_id: str | None) -> list[Mapping[str, Any]] | None:
        history = await run_in_threadpool(self.chat.history, thread_id)
        return None if history is None else [m.model_dump() for m in history]

    def _agent_exists(self, agent_id: int) -> bool:
        with self.db.session() as session:
            return session.get(Agent, agent_id) is not None

    async def agent_exists(self, agent_id: int, user_id: str | None) -> bool:
        return await run_in_threadpool(self._agent_exists, agent_id)

    async def add_message(self, thread_id: int, content: str, user_id: str | None) -> Mapping[str, Any] | None:
        try:
            message = await run_in_threadpool(self.chat.store, thread_id, "user", content)
        except ThreadNotFoundError:
            return None
        return message.model_dump()
