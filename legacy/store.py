"""What the legacy endpoint needs from the application: the seam to its data.

The old socket handler read thread history and stored messages itself; here the application
provides those three operations, so the legacy package stays free of any database code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

Access = Literal["ok", "not_found", "forbidden"]


class LegacyStore(Protocol):
    async def access(self, scope: Literal["thread", "agent"], target_id: int, user_id: str | None) -> Access:
        """May `user_id` (None when auth is off) follow this thread or agent?"""

    async def thread_history(self, thread_id: int) -> list[Mapping[str, Any]] | None:
        """The thread's messages in order, or None when it does not exist."""

    async def add_message(self, thread_id: int, content: str) -> Mapping[str, Any] | None:
        """Store a user message; its legacy representation, or None if the thread does not exist."""
