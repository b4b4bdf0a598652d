"""Topic gate of the reference application: a topic is served only if its resource exists."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from bridge.db import Agent, Database, Thread
from unified.protocol import ErrorCode
from unified.topics import Topic


class DatabaseGate:
    """Refuses `agent:{id}` and `thread:{id}` topics whose row does not exist (`not_found`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _exists(self, topic: Topic) -> bool:
        model = Agent if topic.kind == "agent" else Thread
        with self.db.session() as session:
            return session.get(model, topic.resource_id) is not None

    async def check(self, topic: Topic, user_id: str | None) -> ErrorCode | None:
        if topic.resource_id is None:
            return None
        exists = await run_in_threadpool(self._exists, topic)
        return None if exists else ErrorCode.NOT_FOUND
