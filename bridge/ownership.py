"""Who owns which agent and thread: the access rule of both socket paths, with a short memory.

Every unified subscribe and every legacy view asks the same question, `access(kind, id, user)`.
Asked of the database each time it costs a thread-pool hop and a query (a third of the server's
CPU per unified navigation, docs/benchmarks.md), for an answer that almost never changes: in the
reference application an owner is set when an agent is created and a thread never moves to
another agent. So existing resources are remembered for `ttl_s` (LRU-bounded), and forgotten at
once when the bus carries their deletion (`on_publication`, a bus sink). What the cache cannot see
is a change made to the database behind the application's back; `ttl_s` bounds how long such a
change goes unnoticed (`WSMIGRATE_OWNERSHIP_CACHE_TTL_S`; 0 asks the database every time).
Missing resources are not remembered: a thread created a moment later is found at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal, NamedTuple

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from wsmigrate.bridge.auth import Access
from wsmigrate.bridge.db import Agent, Database, Thread
from wsmigrate.unified import EventType, Publication

Kind = Literal["agent", "thread"]
DEFAULT_TTL_S = 30.0
DEFAULT_CAPACITY = 10_000


class _Owned(NamedTuple):
    owner: str | None  # None: nobody (created with auth off); everyone may use it
    agent_id: int  # the agent itself, or the thread's agent
    expires: float


class Ownership:
    def __init__(self, db: Database, *, ttl_s: float = DEFAULT_TTL_S, capacity: int = DEFAULT_CAPACITY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._clock = clock
        self._known: OrderedDict[tuple[Kind, int], _Owned] = OrderedDict()
        self.lookups = 0  # database round trips (for tests and the curious)

    async def access(self, kind: Kind, resource_id: int, user_id: str | None) -> Access:
        """`ok`, `not_found` or `forbidden` for `user_id` (None: auth off) on this agent or thread."""
        key = (kind, resource_id)
        owned = self._known.get(key)
        if owned is None or owned.expires <= self._clock():
            found = await run_in_threadpool(self._lookup, kind, resource_id)
            if found is None:
                self._known.pop(key, None)
                return "not_found"
            owned = _Owned(found[0], found[1], self._clock() + self.ttl_s)
            if self.ttl_s > 0:
                self._remember(key, owned)
        if user_id is None or owned.owner is None or owned.owner == user_id:
            return "ok"
        return "forbidden"

    def _remember(self, key: tuple[Kind, int], owned: _Owned) -> None:
        self._known[key] = owned
        self._known.move_to_end(key)
        if len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def _lookup(self, kind: Kind, resource_id: int) -> tuple[str | None, int] | None:
        """(owner, agent id) from the database in one query, or None when it does not exist."""
        self.lookups += 1
        with self.db.session() as session:
            if kind == "agent":
                row = session.execute(select(Agent.owner_id, Agent.id).where(Agent.id == resource_id)).first()
            else:
                row = session.execute(select(Agent.owner_id, Thread.agent_id).join(Agent, Thread.agent_id == Agent.id)
                                      .where(Thread.id == resource_id)).first()
        if row is None:
            return None
        owner, agent_id = row
        return (None if owner is None else str(owner)), int(agent_id)

    def on_publication(self, publication: Publication) -> None:
        """Bus sink: forget what was deleted (an agent takes its threads with it)."""
        event_type = publication.event.type
        if event_type not in (EventType.AGENT_DELETED, EventType.THREAD_DELETED):
            return
        data = publication.event.data
        resource_id = next((v for v in (data.get("id"), data.get("thread_id" if event_type is EventType.THREAD_DELETED
                                                                   else "agent_id"))
                            if isinstance(v, int) and not isinstance(v, bool)), None)
        if resource_id is None:
            return
        if event_type is EventType.THREAD_DELETED:
            self._known.pop(("thread", resource_id), None)
            return
        self._known.pop(("agent", resource_id), None)
        for key in [k for k, owned in self._known.items() if k[0] == "thread" and owned.agent_id == resource_id]:
            del self._known[key]
