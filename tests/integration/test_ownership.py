"""The access rule with its short memory (bridge/ownership.py), on a real database and bus."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.chat.db import Agent, Database, Thread, User
from examples.chat.declaration import ChatEvent
from examples.chat.ownership import Ownership
from tests.support import CHAT, FakeClock
from wsmigrate.unified import EventBus


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path}/own.db")
    database.create_all()
    with database.session() as session:
        session.add(User(id=7, name="seven", token="t7"))
        session.flush()
        session.add_all([Agent(id=1, name="mine", owner_id=7), Agent(id=2, name="shared", owner_id=None)])
        session.flush()
        session.add_all([Thread(id=10, agent_id=1), Thread(id=20, agent_id=2)])
        session.commit()
    return database


async def test_answers_the_rule_and_asks_the_database_once_per_resource(db: Database) -> None:
    ownership = Ownership(db)
    assert await ownership.access("thread", 10, "7") == "ok"
    assert await ownership.access("thread", 10, "8") == "forbidden"
    assert await ownership.access("thread", 10, None) == "ok"  # auth off
    assert await ownership.access("agent", 2, "8") == "ok"  # nobody's agent: everyone's
    assert await ownership.access("agent", 1, "7") == "ok"
    assert ownership.lookups == 3  # thread 10, agent 2, agent 1: one query each, then remembered
    assert await ownership.access("thread", 99, "7") == "not_found"
    assert await ownership.access("thread", 99, "7") == "not_found"
    assert ownership.lookups == 5  # a missing resource is asked again: it may be created any moment


async def test_remembered_answers_expire(db: Database) -> None:
    clock = FakeClock()
    ownership = Ownership(db, ttl_s=30, clock=clock)
    await ownership.access("thread", 10, "7")
    with db.session() as session:  # behind the application's back: only the expiry can notice
        session.query(Thread).filter(Thread.id == 10).delete()
        session.commit()
    assert await ownership.access("thread", 10, "7") == "ok"
    clock.now += 31
    assert await ownership.access("thread", 10, "7") == "not_found"


async def test_a_zero_ttl_asks_every_time(db: Database) -> None:
    ownership = Ownership(db, ttl_s=0)
    for _ in range(3):
        assert await ownership.access("agent", 1, "7") == "ok"
    assert ownership.lookups == 3


async def test_deletions_on_the_bus_are_forgotten_at_once(db: Database) -> None:
    bus = EventBus(catalog=CHAT)
    ownership = Ownership(db)
    bus.attach(ownership.on_publication)
    await bus.start()
    try:
        for kind, resource in (("thread", 10), ("thread", 20), ("agent", 1)):
            await ownership.access(kind, resource, "7")  # type: ignore[arg-type]
        with db.session() as session:
            session.query(Thread).filter(Thread.id == 20).delete()
            session.query(Thread).filter(Thread.agent_id == 1).delete()
            session.query(Agent).filter(Agent.id == 1).delete()
            session.commit()
        await bus.publish(CHAT.create(ChatEvent.THREAD_DELETED, {"id": 20, "agent_id": 2}))
        assert await ownership.access("thread", 20, "7") == "not_found"
        await bus.publish(CHAT.create(ChatEvent.AGENT_DELETED, {"id": 1, "owner_id": 7}))
        assert await ownership.access("agent", 1, "7") == "not_found"
        assert await ownership.access("thread", 10, "7") == "not_found"  # the agent took its threads along
    finally:
        await bus.stop()


async def test_the_memory_is_bounded(db: Database) -> None:
    ownership = Ownership(db, capacity=2)
    for kind, resource in (("thread", 10), ("thread", 20), ("agent", 1), ("agent", 2)):
        await ownership.access(kind, resource, None)  # type: ignore[arg-type]
    assert len(ownership._known) == 2
