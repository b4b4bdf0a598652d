"""Which protocol a request to `/api/ws` speaks (pure: decided from the query string alone)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LegacyView:
    """The view a legacy socket was opened for; exactly one of the ids is set."""

    thread_id: int | None = None
    agent_id: int | None = None


def _positive_int(raw: str) -> int:
    value = int(raw)  # raises ValueError on junk
    if value < 1:
        raise ValueError(raw)
    return value


def legacy_view(query: Mapping[str, str]) -> LegacyView | None:
    """The legacy view named by `thread_id` / `agent_id`, or None for a unified connection.

    A malformed id still makes the request legacy (the old clients sent it): it is answered with
    the legacy "not found" error for id 0, which no row ever has.
    """
    if "thread_id" in query:
        try:
            return LegacyView(thread_id=_positive_int(query["thread_id"]))
        except ValueError:
            return LegacyView(thread_id=0)
    if "agent_id" in query:
        try:
            return LegacyView(agent_id=_positive_int(query["agent_id"]))
        except ValueError:
            return LegacyView(agent_id=0)
    return None
