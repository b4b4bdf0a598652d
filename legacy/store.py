"""What the legacy endpoint needs from the application: the seam to its data.

The old socket handler read thread history and stored messages itself; here the application
provides those three operations, so the legacy package stays free of any database code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class LegacyStore(Protocol):
    async def thread_history(self, thread_id: int, user_id: str | None) -> list[Mapping[str, Any]] | None:
        """The thread's messages in order, or None when it does not exist (or is not the user's)."""

    async def agent_exists(self, agent_id: int, user_id: str | None) -> bool:
        """True when the agent exists (and belongs to the user)."""

    async def add_message(self, thread_id: int, content: str, user_id: str | None) -> Mapping[str, Any] | None:
        """Store a user message; its legacy representation, or None if the thread does not exist."""
