"""The composed toolkit of one process: every long-lived component, started and stopped together.

Built from the application's declaration (`Declaration`: event catalogue, translations, legacy
protocol) and `Settings`; `wsmigrate.bridge.server.mount.WsMigrate` builds one and mounts it into an app.
Where each runtime callback is registered, in one place (`__init__`), so a reader can follow an
event (docs/architecture.md walks the same path):

* the bus's rollout hook: `DualPath.decide_rollout` (stage, cohort, flags revision, once per event);
* bus sinks, in order: `ConnectionManager.on_publication` (unified sockets and the legacy sockets'
  compat connections), `DualPath.on_publication` (the legacy path);
* legacy hub listener: the `DualPath` (mirrors broadcasts onto the bus, attaches compat connections);
* compat renderer and compat gate on the unified manager: `DualPath.render_compat`,
  `DualPath.unified_path_involved`;
* delivery observer: the `Comparator`; flags listener: `_export_flags` (the stage gauges);
* the application's transactional outbox (if any) hands its commits to the `OutboxRelay`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from wsmigrate.bridge.comparator import Comparator
from wsmigrate.bridge.dual_path import DualPath
from wsmigrate.bridge.flags import FileFlagStore, FlagStore, MemoryFlagStore
from wsmigrate.bridge.server.gc_policy import CollectorPauses, CollectorPolicy, parse_thresholds
from wsmigrate.bridge.server.guards import ConnectionQuota, OriginPolicy
from wsmigrate.bridge.server.http_protocol import HEAD_TIMEOUT
from wsmigrate.bridge.server.probes import (
    PROBE_EVENT,
    PROBE_PARAM,
    PROBE_SCOPE,
    PROBE_UNIFIED_KIND,
    ProbeRunner,
    probe_view,
)
from wsmigrate.bridge.server.settings import Settings
from wsmigrate.bridge.server.workers import refuse_several_workers
from wsmigrate.bridge.stages import FlagsDocument, parse_document, resolve
from wsmigrate.bridge.translation import TranslationTable, flat
from wsmigrate.legacy.manager import LegacyConnectionManager
from wsmigrate.legacy.views import Access, LegacyProtocol, TargetId
from wsmigrate.metrics import WsMetrics
from wsmigrate.metrics.registry import BUS_DISCONTINUITY_REASONS
from wsmigrate.unified import ConnectionManager, EventBus, EventCatalog, MemoryBackend
from wsmigrate.unified.backend import BusBackend
from wsmigrate.unified.endpoint import Authorize, allow_all
from wsmigrate.unified.events import now_ms
from wsmigrate.unified.history import TopicHistory
from wsmigrate.unified.outbox_direct import set_write_coalescing
from wsmigrate.unified.protocol import CloseCode, ServerPing
from wsmigrate.unified.topics import PROBE_TOPIC

if TYPE_CHECKING:
    from wsmigrate.unified.outbox_relay import OutboxRelay
    from wsmigrate.unified.transactional_outbox import TransactionalOutbox

log = logging.getLogger(__name__)

UNKNOWN_TYPE = "unknown"  # the event-type label of legacy frames that carry no event type


@dataclass(frozen=True)
class Declaration:
    """What an application declares to adopt wsmigrate (docs/migration-guide.md)."""

    catalog: EventCatalog
    translations: TranslationTable
    legacy: LegacyProtocol
    authorize: Authorize = allow_all


# REDIS_ON_DEMAND: redis-py is imported only by a deployment on Redis. Importing it costs ~11 MiB
# of resident memory and ~60 ms per process, which a worker on the in-memory bus never uses
# (tests/process/test_imports_on_demand.py keeps it that way).


def make_backend(settings: Settings, metrics: WsMetrics | None = None,
                 on_discontinuity: Callable[[str], None] | None = None) -> BusBackend:
    if settings.bus_url.startswith("memory"):
        history = TopicHistory(size=settings.history_size, ttl_s=settings.history_ttl_s)
        return MemoryBackend(history)
    if settings.bus_url.startswith(("redis://", "rediss://")):
        from wsmigrate.unified.redis_backend import RedisBackend  # on demand: see REDIS_ON_DEMAND

        return RedisBackend(settings.bus_url, history_size=settings.history_size,
                            history_ttl_s=settings.history_ttl_s, metrics=metrics, on_discontinuity=on_discontinuity,
                            read_interval_s=settings.bus_read_interval_ms / 1000,
                            replay_cache=settings.bus_replay_cache)
    raise ValueError(f"unsupported WSMIGRATE_BUS_URL {settings.bus_url!r}: use memory:// or redis://")


def make_flag_store(settings: Settings, event_types: Sequence[str]) -> FlagStore:
    """The application's OpenFeature provider when asked (`WSMIGRATE_FLAGS=openfeature`); else Redis
    when the bus is Redis (one document for every worker), else a file, else memory."""
    if settings.flags == "openfeature":
        try:
            from wsmigrate.bridge.flags_openfeature import OpenFeatureFlagStore
        except ImportError as exc:
            raise ValueError("WSMIGRATE_FLAGS=openfeature needs the extra: pip install 'wsmigrate[openfeature]' "
                             f"({exc})") from None
        return OpenFeatureFlagStore(event_types=event_types, domain=settings.openfeature_domain or None,
                                    prefix=settings.openfeature_prefix)
    audit = Path(settings.audit_log) if settings.audit_log else None
    flags_url = settings.flags_url or settings.bus_url
    if flags_url.startswith(("redis://", "rediss://")):
        from wsmigrate.bridge.flags_redis import RedisFlagStore  # on demand: see REDIS_ON_DEMAND
        from wsmigrate.unified.redis_url import bus_url_options, parse_flag

        url, options = bus_url_options(flags_url)
        if parse_flag(options.get("cluster", "false")):
            # its compare-and-set spans keys of several slots: one Redis primary holds the document
            raise ValueError("the flags document needs one Redis primary, not a Redis Cluster: set "
                             "WSMIGRATE_FLAGS_URL=redis://host:port/db (or WSMIGRATE_FLAGS=openfeature)")
        prefix = options.get("prefix")
        seed = parse_document(Path(settings.flags_file).read_text(encoding="utf-8"),
                              fmt="json" if settings.flags_file.endswith(".json") else "toml",
                              event_types=event_types) if settings.flags_file else None
        return RedisFlagStore(url, prefix=prefix or "wsmigrate", seed=seed, event_types=event_types)
    if settings.flags_file:
        return FileFlagStore(Path(settings.flags_file), audit_file=audit, event_types=event_types)
    default = resources.files("wsmigrate.bridge").joinpath("flags.default.toml").read_text(encoding="utf-8")
    return MemoryFlagStore(parse_document(default, fmt="toml", event_types=event_types), audit_file=audit)


def with_probe(declaration: Declaration, unified_path: str) -> Declaration:
    """The declaration plus wsmigrate's own probe: its event type, translation and legacy view."""
    declaration.catalog.declare_internal(PROBE_EVENT, PROBE_TOPIC)
    if PROBE_SCOPE not in declaration.translations.scopes:
        declaration.translations.add_scope(PROBE_SCOPE, PROBE_TOPIC)
        declaration.translations.add(flat(PROBE_EVENT, scope=PROBE_SCOPE, target=PROBE_PARAM))
    protocol = declaration.legacy
    app_access = protocol.access

    async def access(scope: str, target_id: TargetId, user_id: str | None) -> Access:
        return "ok" if scope == PROBE_SCOPE else await app_access(scope, target_id, user_id)

    views = (*protocol.views, probe_view(unified_path))
    return replace(declaration, legacy=replace(protocol, views=views, access=access))


class Runtime:
    """Holds and wires the components; `start`/`stop` bracket the server's lifetime."""

    def __init__(self, declaration: Declaration, settings: Settings, *, unified_path: str = "/api/ws",
                 registry: CollectorRegistry | None = None, outbox: TransactionalOutbox | None = None) -> None:
        self.settings = settings
        self.declaration = declaration = with_probe(declaration, unified_path)
        self.catalog = declaration.catalog
        self.translations = declaration.translations
        self.legacy_protocol = declaration.legacy
        self.authorize = declaration.authorize
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = WsMetrics(self.registry, event_types=(*self.catalog.names, PROBE_EVENT, UNKNOWN_TYPE),
                                 connection_kinds=(*self.legacy_protocol.kinds, PROBE_UNIFIED_KIND),
                                 legacy_only_frames=self.translations.legacy_only_frames)
        hot = self.metrics if settings.metrics_enabled else None  # per-event/per-delivery instrumentation
        self.bus = EventBus(make_backend(settings, self.metrics, self._on_bus_discontinuity), catalog=self.catalog,
                            metrics=hot, handler_queue_size=settings.handler_queue_size)
        self.manager = ConnectionManager(self.bus, metrics=hot, max_topics=settings.max_topics)
        self.legacy = LegacyConnectionManager(metrics=hot)
        self.flags = make_flag_store(settings, self.catalog.names)
        self._flags_in_force: FlagsDocument | None = None
        self.flags.add_listener(self._export_flags)
        if hasattr(self.flags, "on_rejection"):  # a store reading the team's flag system counts what it refused
            self.flags.on_rejection = self.metrics.flags_rejections.inc
        self.comparator = Comparator(metrics=hot, window_s=settings.compare_window_s,
                                     capacity=settings.compare_capacity, sample_rate=settings.compare_sample_rate)
        self.bridge = DualPath(self.bus, self.manager, self.legacy, self.flags, self.translations, metrics=hot,
                             observer=self.comparator)
        self.bridge.install()
        # The application's transactional outbox and its relay (started after the bus, stopped before)
        self.outbox = outbox
        self.relay: OutboxRelay | None = None
        if outbox is not None:  # SQLAlchemy only for an app with an outbox (it built the outbox with it)
            from wsmigrate.unified.outbox_relay import OutboxRelay

            self.relay = OutboxRelay(outbox, self.bus, metrics=self.metrics,
                                     sweep_interval_s=settings.relay_sweep_interval_s, grace_s=settings.relay_grace_s)
        self.quota = ConnectionQuota(settings.max_connections_per_user)
        self.origins = OriginPolicy.for_server(settings.allowed_origins, settings.self_url)
        self.accepting = True
        self.started = False
        pauses = CollectorPauses(self.metrics.gc_pause)
        self.metrics.batch.add_source(pauses.publish)
        self.collector = CollectorPolicy(freeze=settings.gc_freeze, thresholds=parse_thresholds(settings.gc_thresholds),
                                         pauses=pauses, frozen_gauge=self.metrics.gc_frozen)
        self._expiry: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        # The probes' own credential: shared by every worker when `wsmigrate serve` set it.
        self.probe_token = settings.probe_token or secrets.token_urlsafe(24)
        self.probes: ProbeRunner | None = None
        if settings.probes:
            if not settings.self_url:
                raise ValueError("WSMIGRATE_PROBES needs WSMIGRATE_SELF_URL (where this server is reachable)")
            self.probes = ProbeRunner(self.bus, self.metrics, base_url=settings.self_url, path=unified_path,
                                      interval_s=settings.probe_interval_s, window_s=settings.probe_window_s,
                                      headers=lambda: {"Authorization": f"Bearer {self.probe_token}"})

    def _export_flags(self, document: FlagsDocument) -> None:
        previous, self._flags_in_force = self._flags_in_force, document
        for event_type in self.catalog.names:
            stage = resolve(document, event_type).stage.value
            self.metrics.set_stage(event_type, stage)
            before = None if previous is None else resolve(previous, event_type).stage.value
            if before is not None and before != stage:
                self.metrics.stage_changes.labels(event_type, before, stage).inc()
        self.metrics.flags_revision.set(document.revision)

    async def start(self) -> None:
        if self.settings.bus_url.startswith("memory"):
            refuse_several_workers()  # one process per in-memory bus (bridge/server/workers.py)
        await self.bus.start()
        await self.flags.start()
        if self.relay is not None:
            await self.relay.start()
        set_write_coalescing(self.settings.write_coalesce_ms / 1000)  # this loop's direct outboxes
        HEAD_TIMEOUT.seconds = self.settings.request_head_timeout_s  # read by uvicorn's HTTP protocol
        HEAD_TIMEOUT.on_timeout = self.metrics.http_head_timeouts.inc
        loop = asyncio.get_running_loop()
        self._expiry = loop.create_task(self._expire_comparisons())
        self._heartbeat = loop.create_task(self._sweep_heartbeats())
        if not self.settings.auth:
            log.warning("WSMIGRATE_AUTH=off: every client is trusted and nothing is owned; "
                        "for local development and tests only")
        if self.probes is not None:
            await self.probes.start()
        self.started = True
        self.collector.apply()  # last: what start-up built is frozen (bridge/server/gc_policy.py)

    async def _sweep_heartbeats(self) -> None:
        """Ping quiet unified clients and close the ones that stopped answering (4408)."""
        interval, timeout = self.settings.heartbeat_interval_s, self.settings.heartbeat_timeout_s
        period = min(interval, timeout) / 4
        while True:
            await asyncio.sleep(period)
            self.manager.sweep_heartbeats(interval, timeout, ServerPing(ts=now_ms()).model_dump_json())

    def _on_bus_discontinuity(self, reason: str) -> None:
        """The shared stream lost events (Redis restarted empty, trimmed past us, a seq gap).

        Live subscriptions would continue as if nothing happened, so every socket is told to
        reconnect (1012): unified clients resubscribe with `since` and learn `recovered: false`
        wherever the history is gone (and refetch), legacy clients reopen their view afresh.
        """
        log.error("bus discontinuity (%s): asking every client to reconnect", reason)
        if self.metrics is not None:
            self.metrics.bus_discontinuities.labels(reason if reason in BUS_DISCONTINUITY_REASONS else "gap").inc()
        for close in self._socket_closers():
            close(CloseCode.SERVICE_RESTART, f"event stream discontinuity ({reason})")

    def _socket_closers(self) -> list[Callable[[int, str], None]]:
        """One close per open socket of either protocol. Legacy sockets also have a compat
        connection in the unified manager (renderer set) sharing their outbox: counted once."""
        closers: list[Callable[[int, str], None]] = [
            c.outbox.shutdown for c in self.manager.connections() if c.renderer is None]
        closers.extend(c.outbox.shutdown for c in self.legacy.connections())
        return closers

    async def drain(self) -> None:
        """Stop accepting sockets and close the open ones with 1012, batch by batch."""
        self.accepting = False
        closers = self._socket_closers()
        size, pause = self.settings.shutdown_batch_size, self.settings.shutdown_batch_pause_s
        for start in range(0, len(closers), size):
            batch = closers[start:start + size]
            for close in batch:
                close(CloseCode.SERVICE_RESTART, "server restarting: reconnect")
            log.info("closed batch %d of %d connections with 1012", start // size + 1, len(batch))
            await asyncio.sleep(pause)

    async def _expire_comparisons(self) -> None:
        """Close comparison windows as they end (twice per window, at least every second)."""
        period = min(1.0, self.comparator.window_s / 2)
        while True:
            await asyncio.sleep(period)
            self.comparator.expire()

    async def stop_relay(self) -> None:
        """Stop the outbox relay (idempotent): it is done with the application's engine once this
        returns, calls still running in worker threads included. `WsMigrate.install`'s lifespan
        calls it before the application's own teardown, `stop` again in any case."""
        if self.relay is not None:
            await self.relay.stop()

    async def stop(self) -> None:
        self.started = False
        if self.probes is not None:
            await self.probes.stop()
        for close in self._socket_closers():
            close(CloseCode.SERVICE_RESTART, "server restarting")
        for task in (self._expiry, self._heartbeat):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.comparator.flush()
        await self.stop_relay()
        await self.flags.stop()
        await self.bus.stop()
        self.collector.restore()
