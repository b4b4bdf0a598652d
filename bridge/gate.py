"""Topic gate of the reference application: a topic is served only if its resource exists and
belongs to the subscriber (`not_found` / `forbidden` otherwise)."""

from __future__ import annotations

from wsmigrate.bridge.ownership import Ownership
from wsmigrate.unified.protocol import ErrorCode
from wsmigrate.unified.topics import Topic


class DatabaseGate:
    def __init__(self, ownership: Ownership) -> None:
        self.ownership = ownership

    async def check(self, topic: Topic, user_id: str | None) -> ErrorCode | None:
        if topic.resource_id is None or topic.kind not in ("agent", "thread"):
            return None
        verdict = await self.ownership.access("agent" if topic.kind == "agent" else "thread", topic.resource_id,
                                              user_id)
        if verdict == "not_found":
            return ErrorCode.NOT_FOUND
        return ErrorCode.FORBIDDEN if verdict == "forbidden" else None
