"""The reference application's side of the legacy seam: access, history and message storage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool

from wsmigrate.bridge.auth import Access
from wsmigrate.bridge.chat import ChatService, ThreadNotFoundError
from wsmigrate.bridge.ownership import Ownership


class DatabaseLegacyStore:
    """`legacy.store.LegacyStore` over the reference app's database."""

    def __init__(self, ownership: Ownership, chat: ChatService) -> None:
        self.ownership = ownership
        self.chat = chat

    async def access(self, scope: Literal["thread", "agent"], target_id: int, user_id: str | None) -> Access:
        return await self.ownership.access(scope, target_id, user_id)

    async def thread_history(self, thread_id: int) -> list[Mapping[str, Any]] | None:
        history = await run_in_threadpool(self.chat.history, thread_id)
        return None if history is None else [m.model_dump() for m in history]

    async def add_message(self, thread_id: int, content: str) -> Mapping[str, Any] | None:
        try:
            message = await run_in_threadpool(self.chat.store, thread_id, "user", content)
        except ThreadNotFoundError:
            return None
        return message.model_dump()
