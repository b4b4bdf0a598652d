"""The composed server: every long-lived component of one process, started and stopped together."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from bridge.chat import ChatService
from bridge.db import Database
from bridge.gate import DatabaseGate
from bridge.settings import Settings
from metrics import WsMetrics
from unified import ConnectionManager, Event, EventBus, EventType, MemoryBackend
from unified.backend import BusBackend
from unified.history import TopicHistory
from unified.protocol import CloseCode

log = logging.getLogger(__name__)

EVENT_TYPE_LABELS = (*(t.value for t in EventType), "unknown")
SHUTDOWN_GRACE_S = 5.0


class BusEmitter:
    """Announces chat events straight on the bus."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def emit(self, event_type: EventType, data: dict[str, Any]) -> None:
        await self.bus.publish(Event.create(event_type, data))


def make_backend(settings: Settings) -> BusBackend:
    if settings.bus_url.startswith("memory"):
        history = TopicHistory(size=settings.history_size, ttl_s=settings.history_ttl_s)
        return MemoryBackend(history)
    raise ValueError(f"unsupported WSMIGRATE_BUS_URL {settings.bus_url!r}: use memory:// or redis://")


class Runtime:
    """Holds and wires the components; `start`/`stop` bracket the server's lifetime."""

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = WsMetrics(self.registry, event_types=EVENT_TYPE_LABELS)
        self.db = Database(settings.database_url)
        self.bus = EventBus(make_backend(settings), metrics=self.metrics,
                            handler_queue_size=settings.handler_queue_size)
        self.manager = ConnectionManager(self.bus, metrics=self.metrics, max_topics=settings.max_topics)
        self.gate = DatabaseGate(self.db)
        self.chat = ChatService(self.db, BusEmitter(self.bus), chunks=settings.stream_chunks,
                                delay_ms=settings.stream_delay_ms)

    async def start(self) -> None:
        await run_in_threadpool(self.db.create_all)
        await self.bus.start()

    async def stop(self) -> None:
        await self.chat.wait_idle(SHUTDOWN_GRACE_S)
        for connection in list(self.manager.connections()):
            connection.outbox.shutdown(CloseCode.SERVICE_RESTART, "server restarting")
        await self.bus.stop()
        self.db.dispose()
