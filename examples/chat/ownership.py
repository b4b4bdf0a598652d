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
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from examples.chat.db import Agent, Database, Thread
from examples.chat.declaration import ChatEvent
from wsmigrate import Access, Publication

Kind = Literal["agent", "thread"]
DEFAULT_TTL_S = 30.0
DEFAULT_CAPACITY = 10_000


class _Owned(NamedTuple):
    owner: str | None  # None: nobody (created with auth off); everyone may use it
    agent_id: int  # the agent itself, or the thread's agent
    expires: float


def _verdict(owned: _Owned | None, user_id: str | None) -> Access:
    if owned is None:
        return "not_found"
    if user_id is None or owned.owner is None or owned.owner == user_id:
        return "ok"
    return "forbidden"


class Ownership:
    DELETIONS = (ChatEvent.AGENT_DELETED, ChatEvent.THREAD_DELETED)  # the events that change ownership

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
        return (await self.access_many([(kind, resource_id)], user_id))[(kind, resource_id)]

    async def access_many(self, keys: Sequence[tuple[Kind, int]],
                          user_id: str | None) -> dict[tuple[Kind, int], Access]:
        """`access` for several resources at once: what is not remembered is looked up in one
        thread-pool hop, with one query per kind (a subscribe frame's topics, however many)."""
        now = self._clock()
        known: dict[tuple[Kind, int], _Owned | None] = {}
        missing: list[tuple[Kind, int]] = []
        for key in dict.fromkeys(keys):
            owned = self._known.get(key)
            if owned is None or owned.expires <= now:
                missing.append(key)
            else:
                known[key] = owned
        if missing:
            found = await run_in_threadpool(self._lookup_many, missing)
            expires = self._clock() + self.ttl_s
            for key in missing:
                row = found.get(key)
                if row is None:
                    self._known.pop(key, None)
                    known[key] = None
                    continue
                known[key] = owned = _Owned(row[0], row[1], expires)
                if self.ttl_s > 0:
                    self._remember(key, owned)
        return {key: _verdict(owned, user_id) for key, owned in known.items()}

    def _remember(self, key: tuple[Kind, int], owned: _Owned) -> None:
        self._known[key] = owned
        self._known.move_to_end(key)
        if len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def _lookup_many(self, keys: Sequence[tuple[Kind, int]]) -> dict[tuple[Kind, int], tuple[str | None, int]]:
        """(owner, agent id) of each resource that exists, from the database: one query per kind."""
        self.lookups += 1
        agents = [i for k, i in keys if k == "agent"]
        threads = [i for k, i in keys if k == "thread"]
        found: dict[tuple[Kind, int], tuple[str | None, int]] = {}
        with self.db.session() as session:
            if agents:
                for owner, agent_id in session.execute(select(Agent.owner_id, Agent.id).where(Agent.id.in_(agents))):
                    found[("agent", int(agent_id))] = (None if owner is None else str(owner)), int(agent_id)
            if threads:
                query = (select(Agent.owner_id, Thread.agent_id, Thread.id).join(Agent, Thread.agent_id == Agent.id)
                         .where(Thread.id.in_(threads)))
                for owner, agent_id, thread_id in session.execute(query):
                    found[("thread", int(thread_id))] = (None if owner is None else str(owner)), int(agent_id)
        return found

    @staticmethod
    def needs(event_type: str, topics: Sequence[str]) -> bool:
        """The sink's interest: only deletions, so a worker skips the rest of the bus for it."""
        return event_type in Ownership.DELETIONS

    def on_publication(self, publication: Publication) -> None:
        """Bus sink: forget what was deleted (an agent takes its threads with it)."""
        event_type = publication.event.type
        if not self.needs(event_type, publication.topics):
            return
        data = publication.event.data
        resource_id = next((v for v in (data.get("id"), data.get("thread_id" if event_type == ChatEvent.THREAD_DELETED
                                                                   else "agent_id"))
                            if isinstance(v, int) and not isinstance(v, bool)), None)
        if resource_id is None:
            return
        if event_type == ChatEvent.THREAD_DELETED:
            self._known.pop(("thread", resource_id), None)
            return
        self._known.pop(("agent", resource_id), None)
        for key in [k for k, owned in self._known.items() if k[0] == "thread" and owned.agent_id == resource_id]:
            del self._known[key]
