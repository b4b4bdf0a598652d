"""Topic gate of the reference application: a topic is served only if its resource exists and
belongs to the subscriber (`not_found` / `forbidden` otherwise)."""

from __future__ import annotations

from typing import Literal

from starlette.concurrency import run_in_threadpool

from bridge.auth import access
from bridge.db import Database
from unified.protocol import ErrorCode
from unified.topics import Topic


class DatabaseGate:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def check(self, topic: Topic, user_id: str | None) -> ErrorCode | None:
        if topic.resource_id is None or topic.kind not in ("agent", "thread"):
            return None
        kind: Literal["agent", "thread"] = "agent" if topic.kind == "agent" else "thread"
        verdict = await run_in_threadpool(access, self.db, kind, topic.resource_id, user_id)
        if verdict == "not_found":
            return ErrorCode.NOT_FOUND
        return ErrorCode.FORBIDDEN if verdict == "forbidden" else None
