"""The composed server: every long-lived component of one process, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from pathlib import Path

from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from bridge.chat import ChatService, LegacyCallSites
from bridge.comparator import Comparator
from bridge.db import Database
from bridge.dual_path import Bridge
from bridge.flags import FileFlagStore, FlagStore, MemoryFlagStore
from bridge.gate import DatabaseGate
from bridge.legacy_store import DatabaseLegacyStore
from bridge.probes import ProbeRunner
from bridge.settings import Settings
from bridge.stages import FlagsDocument, parse_document, resolve
from legacy.manager import LegacyConnectionManager
from metrics import WsMetrics
from unified import ConnectionManager, EventBus, EventType, MemoryBackend
from unified.backend import BusBackend
from unified.history import TopicHistory
from unified.protocol import CloseCode

log = logging.getLogger(__name__)

EVENT_TYPE_LABELS = (*(t.value for t in EventType), "unknown")
SHUTDOWN_GRACE_S = 5.0


def make_backend(settings: Settings) -> BusBackend:
    if settings.bus_url.startswith("memory"):
        history = TopicHistory(size=settings.history_size, ttl_s=settings.history_ttl_s)
        return MemoryBackend(history)
    raise ValueError(f"unsupported WSMIGRATE_BUS_URL {settings.bus_url!r}: use memory:// or redis://")


def make_flag_store(settings: Settings) -> FlagStore:
    audit = Path(settings.audit_log) if settings.audit_log else None
    if settings.flags_file:
        return FileFlagStore(Path(settings.flags_file), audit_file=audit)
    default = resources.files("bridge").joinpath("flags.default.toml").read_text(encoding="utf-8")
    return MemoryFlagStore(parse_document(default, fmt="toml"), audit_file=audit)


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
        self.legacy = LegacyConnectionManager(metrics=self.metrics)
        self.chat = ChatService(self.db, LegacyCallSites(self.legacy), chunks=settings.stream_chunks,
                                delay_ms=settings.stream_delay_ms)
        self.legacy_store = DatabaseLegacyStore(self.db, self.chat)
        self.flags = make_flag_store(settings)
        self.flags.add_listener(self._export_flags)
        self.comparator = Comparator(metrics=self.metrics, window_s=settings.compare_window_s,
                                     capacity=settings.compare_capacity, sample_rate=settings.compare_sample_rate)
        self.bridge = Bridge(self.bus, self.manager, self.legacy, self.flags, metrics=self.metrics,
                             observer=self.comparator)
        self._expiry: asyncio.Task[None] | None = None
        self.probes: ProbeRunner | None = None
        if settings.probes:
            if not settings.self_url:
                raise ValueError("WSMIGRATE_PROBES needs WSMIGRATE_SELF_URL (where this server is reachable)")
            self.probes = ProbeRunner(self.bus, self.db, self.metrics, base_url=settings.self_url,
                                      interval_s=settings.probe_interval_s, window_s=settings.probe_window_s)
        self.bridge.install()

    def _export_flags(self, document: FlagsDocument) -> None:
        for event_type in EventType:
            self.metrics.set_stage(event_type.value, resolve(document, event_type).stage.value)
        self.metrics.flags_revision.set(document.revision)

    async def start(self) -> None:
        await run_in_threadpool(self.db.create_all)
        await self.bus.start()
        await self.flags.start()
        self._expiry = asyncio.get_running_loop().create_task(self._expire_comparisons())
        if self.probes is not None:
            await self.probes.start()

    async def _expire_comparisons(self) -> None:
        """Close comparison windows as they end (twice per window, at least every second)."""
        period = min(1.0, self.comparator.window_s / 2)
        while True:
            await asyncio.sleep(period)
            self.comparator.expire()

    async def stop(self) -> None:
        if self.probes is not None:
            await self.probes.stop()
        await self.chat.wait_idle(SHUTDOWN_GRACE_S)
        for connection in list(self.manager.connections()):
            connection.outbox.shutdown(CloseCode.SERVICE_RESTART, "server restarting")
        for legacy_connection in list(self.legacy.connections()):
            legacy_connection.outbox.shutdown(CloseCode.SERVICE_RESTART, "server restarting")
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.gather(self._expiry, return_exceptions=True)
        self.comparator.flush()
        await self.flags.stop()
        await self.bus.stop()
        self.db.dispose()
