"""wsmigrate settings, read from `WSMIGRATE_*` environment variables with embedded defaults.

Environment variables are the one configuration channel because several uvicorn workers must
agree on them: `wsmigrate serve` turns its flags into these variables before starting workers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wsmigrate.bridge.errors import SettingsError

ENV_PREFIX = "WSMIGRATE_"


class EnvSettings(BaseModel):
    """Settings read from `WSMIGRATE_*` environment variables: field `x` from `WSMIGRATE_X`.

    wsmigrate's own are `Settings`; an application may keep its own in a subclass (the examples'
    database URL and demo options), so one environment configures both and every worker agrees."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Build settings from `environ` (default: the process environment), then `overrides`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError("; ".join(_describe(error, overrides) for error in exc.errors())) from exc

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in another process."""
        return {ENV_PREFIX + name.upper(): str(value) for name, value in self.model_dump().items()}


def _describe(error: Any, overrides: Mapping[str, Any]) -> str:
    """One invalid value as the operator wrote it: `WSMIGRATE_X='-1': input should be ...`."""
    field = str(error["loc"][0]) if error["loc"] else ""
    where = field if field in overrides else ENV_PREFIX + field.upper()
    return f"{where}={error.get('input')!r}: {error['msg'][:1].lower()}{error['msg'][1:]}"


class Settings(EnvSettings):
    """Everything wsmigrate itself can be told (docs/operations.md lists them)."""

    bus_url: str = "memory://"
    # Redis bus: under steady traffic a worker reads the stream at most once per interval, so that
    # one read brings several entries (unified/redis_listener.py); 0 reads at once, every time
    bus_read_interval_ms: float = Field(5.0, ge=0, le=1000)
    # Redis bus: history entries whose decoding concurrent replays share (unified/replay_cache.py;
    # about 3.5 KiB each, held only while replays use them); 0 decodes every replay afresh
    bus_replay_cache: int = Field(20_000, ge=0, le=1_000_000)
    # delivery
    outbox_capacity: int = Field(1000, ge=1)
    # under back-to-back traffic a socket's frames wait up to this long to leave in one flush
    # (unified/outbox_direct.py); paced or occasional traffic is never held. 0: every loop turn
    write_coalesce_ms: float = Field(1.0, ge=0, le=100)
    max_topics: int = Field(100, ge=1)
    handler_queue_size: int = Field(10_000, ge=1)
    history_size: int = Field(300, ge=0)
    history_ttl_s: float = Field(300.0, ge=0)
    # per-event and per-delivery Prometheus instrumentation (the path ledger, bus, bridge and
    # comparator counters); connection-level counters and gauges stay. Off only to measure its cost.
    metrics_enabled: bool = True
    # CPython's cycle collector, process-wide (bridge/server/gc_policy.py; docs/operations.md)
    gc_freeze: bool = True
    gc_thresholds: str = Field("", pattern=r"^\s*(\d+\s*,\s*\d+\s*,\s*\d+)?\s*$")
    # the transactional outbox's relay (unified/outbox_relay.py), when the app gives an outbox
    relay_sweep_interval_s: float = Field(1.0, gt=0)
    relay_grace_s: float = Field(5.0, ge=0)  # a row older than this is swept by any worker
    # flags and operations
    flags: str = Field("", pattern=r"^(|openfeature)$")  # openfeature: from the app's OpenFeature provider
    openfeature_prefix: str = Field("wsmigrate", min_length=1, max_length=100)
    openfeature_domain: str = ""  # the OpenFeature domain of the provider (empty: the default provider)
    flags_file: str = ""
    # the Redis holding the flags document when it is not the bus's (required with a Redis Cluster bus)
    flags_url: str = ""
    audit_log: str = ""
    admin_token: str = ""
    compare_window_s: float = Field(5.0, gt=0)
    compare_capacity: int = Field(200_000, ge=1)
    compare_sample_rate: float = Field(1.0, ge=0, le=1)
    # synthetic probes (loopback clients of this server at `self_url`)
    probes: bool = False
    probe_interval_s: float = Field(5.0, gt=0)
    probe_window_s: float = Field(5.0, gt=0)
    self_url: str = ""
    probe_token: str = ""  # the probes' credential; `wsmigrate serve` gives every worker the same one
    # authentication and guards
    auth: bool = True
    allowed_origins: str = ""
    max_connections_per_user: int = Field(20, ge=1)
    request_head_timeout_s: float = Field(10.0, gt=0)  # slowloris bound (bridge/server/http_protocol.py)
    # liveness and shutdown
    heartbeat_interval_s: float = Field(25.0, gt=0)
    heartbeat_timeout_s: float = Field(10.0, gt=0)
    shutdown_batch_size: int = Field(500, ge=1)
    shutdown_batch_pause_s: float = Field(0.05, ge=0)
    shutdown_timeout_s: float = Field(10.0, gt=0)
    # protocol limits
    subscribe_rate_per_s: float = Field(10.0, gt=0)
    subscribe_burst: int = Field(20, ge=1)
    max_bad_frames: int = Field(10, ge=1)
    bad_frame_window_s: float = Field(60.0, gt=0)
