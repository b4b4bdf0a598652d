from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from examples.chat.declaration import ChatEvent
from tests.support import CHAT
from wsmigrate.unified import EventBus, Publication, current_bus, publish_event


class AgentModel(BaseModel):
    id: int
    name: str


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    bus = EventBus(catalog=CHAT)
    await bus.start()
    yield bus
    await bus.stop()


async def test_async_route_publishes_its_result_after_returning(bus: EventBus) -> None:
    publications: list[Publication] = []
    bus.attach(publications.append)
    order: list[str] = []

    @publish_event(ChatEvent.AGENT_CREATED, bus=bus)
    async def create() -> AgentModel:
        order.append("committed")
        assert publications == []  # nothing is published before the function returned
        return AgentModel(id=5, name="x")

    result = await create()
    assert result == AgentModel(id=5, name="x")
    assert [p.event.type for p in publications] == [ChatEvent.AGENT_CREATED]
    assert publications[0].event.data == {"id": 5, "name": "x"}
    assert publications[0].topics == ("agent:5", "agents")
    assert order == ["committed"]


async def test_nothing_is_published_when_the_route_raises(bus: EventBus) -> None:
    publications: list[Publication] = []
    bus.attach(publications.append)

    class RollbackError(Exception):
        pass

    @publish_event(ChatEvent.AGENT_UPDATED, bus=bus)
    async def fails() -> AgentModel:
        raise RollbackError

    @publish_event(ChatEvent.AGENT_UPDATED, bus=bus)
    def fails_sync() -> AgentModel:
        raise RollbackError

    with pytest.raises(RollbackError):
        await fails()
    with pytest.raises(RollbackError):
        await asyncio.to_thread(fails_sync)
    assert publications == []


async def test_sync_route_in_a_worker_thread_uses_the_current_bus(bus: EventBus) -> None:
    publications: list[Publication] = []
    bus.attach(publications.append)

    @publish_event(ChatEvent.AGENT_DELETED)
    def delete(agent_id: int) -> dict[str, object]:
        return {"id": agent_id, "name": "gone"}

    token = current_bus.set(bus)
    try:
        returned = await asyncio.to_thread(delete, 9)  # to_thread copies the context, like Starlette
    finally:
        current_bus.reset(token)
    assert returned == {"id": 9, "name": "gone"}
    assert [p.event.data["id"] for p in publications] == [9]


def test_decorator_keeps_the_signature_for_fastapi() -> None:
    import inspect

    @publish_event(ChatEvent.AGENT_CREATED)
    def route(name: str, limit: int = 3) -> dict[str, object]:
        """Docs stay."""
        return {"id": 1}

    assert list(inspect.signature(route).parameters) == ["name", "limit"]
    assert route.__doc__ == "Docs stay."
