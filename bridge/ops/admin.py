"""Admin HTTP API under `/api/admin`: flags, kill switch, audit log.

Protected by a bearer token from `WSMIGRATE_ADMIN_TOKEN`; when it is unset the whole admin API is
disabled (403), so a server never runs with an open or default admin door.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from wsmigrate.bridge.errors import FlagsError
from wsmigrate.bridge.flags import FlagChange, FlagStore
from wsmigrate.bridge.ops.report import Thresholds, build_report, legacy_only_broadcasts, parse_samples
from wsmigrate.bridge.stages import FlagsDocument, Stage, resolve
from wsmigrate.metrics.exposition import render as render_metrics
from wsmigrate.unified import Event
from wsmigrate.unified.errors import InvalidTopicError

if TYPE_CHECKING:
    from wsmigrate.bridge.server.runtime import Runtime

router = APIRouter(prefix="/api/admin")


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def require_admin(request: Request) -> str:
    """Check the bearer token; returns who is acting (for the audit log)."""
    expected = _runtime(request).settings.admin_token
    if not expected:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin API disabled: set WSMIGRATE_ADMIN_TOKEN")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad or missing admin token",
                            headers={"WWW-Authenticate": "Bearer"})
    actor = request.headers.get("x-wsmigrate-actor", "admin")[:100]
    client = request.client.host if request.client else "?"
    return f"{actor}@{client}"


Admin = Annotated[str, Depends(require_admin)]


class StageChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: Stage | None = None
    force: bool = False
    live_percent: int | None = Field(None, ge=0, le=100)
    pin: Stage | None = None
    unpin: bool = False


def store_view(store: FlagStore) -> dict[str, Any]:
    """Where the flags come from. A store that is not `writable` (the team's own flag system) is
    changed where it lives: `stage_flag` names the flag to set for a type (`{event_type}` filled in)."""
    view: dict[str, Any] = {"kind": store.kind, "writable": store.kind != "openfeature"}
    for attribute in ("provider_name", "prefix"):
        value = getattr(store, attribute, None)
        if value is not None:
            view["provider" if attribute == "provider_name" else attribute] = value
    if not view["writable"]:
        view["stage_flag"] = f"{view.get('prefix', 'wsmigrate')}.stage.{{event_type}}"
    return view


def flags_view(document: FlagsDocument, last_error: str | None, event_types: Sequence[str],
               store: FlagStore | None = None,
               cohorts: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, Any]:
    """The flags in force. `cohorts`: per `shadow` type, this worker's legacy connections the flag
    system puts in the live cohort and the rest (`provider_cohort`, for a targeting store)."""
    types: dict[str, Any] = {}
    for event_type in event_types:
        resolution = resolve(document, event_type)
        configured = document.flags_for(event_type)
        types[event_type] = {
            "stage": resolution.stage.value,
            "source": resolution.source,
            "live_percent": resolution.live_percent,
            "configured": configured.model_dump(mode="json"),
        }
        if cohorts is not None and event_type in cohorts:
            types[event_type]["provider_cohort"] = dict(cohorts[event_type])
    return {
        "revision": document.revision,
        "kill_switch": document.kill_switch,
        "default_stage": document.default_stage.value,
        "types": types,
        "last_error": last_error,
        **({"store": store_view(store)} if store is not None else {}),
    }


def _flags_view(runtime: Runtime, document: FlagsDocument) -> dict[str, Any]:
    cohorts = runtime.bridge.cohorts
    return flags_view(document, runtime.flags.last_error, runtime.catalog.names, runtime.flags,
                      None if cohorts is None else cohorts.counts())


async def _apply(request: Request, change: FlagChange, who: str) -> dict[str, Any]:
    runtime = _runtime(request)
    try:
        document = await runtime.flags.apply(change, who)
    except FlagsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _flags_view(runtime, document)


def _declared(request: Request, event_type: str, status_code: int = status.HTTP_404_NOT_FOUND) -> str:
    catalog = _runtime(request).catalog
    if event_type not in catalog:
        raise HTTPException(status_code, f"unknown event type {event_type!r}; declared: {', '.join(catalog.names)}")
    return event_type


@router.get("/flags")
async def get_flags(request: Request, _: Admin) -> dict[str, Any]:
    runtime = _runtime(request)
    return _flags_view(runtime, runtime.flags.current())


@router.get("/flags/audit")
async def get_audit(request: Request, _: Admin) -> list[dict[str, Any]]:
    return await _runtime(request).flags.audit_log()


@router.post("/flags/kill")
async def kill(request: Request, who: Admin) -> dict[str, Any]:
    return await _apply(request, FlagChange(kind="kill"), who)


@router.delete("/flags/kill")
async def unkill(request: Request, who: Admin) -> dict[str, Any]:
    return await _apply(request, FlagChange(kind="unkill"), who)


@router.put("/flags/{event_type}")
async def put_flag(event_type: str, body: StageChange, request: Request, who: Admin) -> dict[str, Any]:
    _declared(request, event_type)
    result: dict[str, Any] = {}
    if body.unpin:
        result = await _apply(request, FlagChange(kind="unpin", event_type=event_type), who)
    elif body.pin is not None:
        result = await _apply(request, FlagChange(kind="pin", event_type=event_type, stage=body.pin), who)
    if body.stage is not None:
        result = await _apply(request, FlagChange(kind="stage", event_type=event_type, stage=body.stage,
                                                  force=body.force), who)
    if body.live_percent is not None:
        result = await _apply(request, FlagChange(kind="percent", event_type=event_type,
                                                  live_percent=body.live_percent, force=body.force), who)
    if not result:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "nothing to change: give stage, pin or live_percent")
    return result


@router.get("/mismatches")
async def mismatches(request: Request, _: Admin) -> dict[str, Any]:
    """The last comparison samples that were not a match (capped ring), newest last, and the last
    lossy translation round trips (`translation_samples`: which field differs)."""
    runtime = _runtime(request)
    comparator = runtime.comparator
    return {"open_pairs": comparator.open_pairs, "samples": list(comparator.samples),
            "translation_samples": list(runtime.bridge.translation_samples)}


@router.get("/report")
async def report(request: Request, _: Admin) -> dict[str, Any]:
    """The numbers of the migration console (`/ops`), read from the same exposition as `/metrics`.

    Per event type: `stage` in force (resolved: kill switch > pin > cohort > type > default), its
    `source` and `live_percent` (`provider_cohort`: this worker's legacy connections the team's flag
    system serves live, and the rest, for a type in `shadow`), `configured_stage` (what
    promote/rollback move and what the transition rule checks), `metrics_stage` (the stage gauge's
    vote), cumulative `published`,
    `delivered` per path, `matches`, `missing`, `mismatches`, `compared`, `consistency` (percent,
    null before any comparison), and `safe` + `verdict` for moving `configured_stage` on (default
    thresholds).
    Also `connections` per kind, `legacy_only` (broadcasts per legacy frame type that carries no
    event type: what still keeps the legacy path), `revision`, `kill_switch`, `default_stage` and
    `last_error` of the flags store. Counters are cumulative: clients derive delivery rates from two successive reports,
    dividing the counter difference by the `generated_at` difference (server clock, seconds).
    Rendering and parsing the exposition takes tens of milliseconds: it runs off the event loop.
    """
    return await run_in_threadpool(_ops_report, _runtime(request))


def _ops_report(runtime: Runtime) -> dict[str, Any]:
    generated_at = time.time()  # when the counters were read
    runtime.metrics.batch.flush()
    text = render_metrics(runtime.registry).decode()
    reports = build_report(text, runtime.catalog.names)
    legacy_only = legacy_only_broadcasts(text)
    gauge = "\n".join(line for line in text.splitlines() if line.startswith("wsmigrate_connections{"))
    connections: dict[str, int] = {}
    for labels, value in parse_samples(gauge + "\n").get("wsmigrate_connections", []):
        kind = labels.get("kind", "?")
        connections[kind] = connections.get(kind, 0) + int(value)
    document = runtime.flags.current()
    cohorts = {} if runtime.bridge.cohorts is None else runtime.bridge.cohorts.counts()
    thresholds = Thresholds()
    types: dict[str, Any] = {}
    for event_type in runtime.catalog.names:
        parity = reports[event_type]
        resolution = resolve(document, event_type)
        configured = (document.flags_for(event_type).stage or document.default_stage).value
        metrics_stage = parity.stage
        parity.stage = configured  # the verdict judges the move promote would make: from the configured stage
        safe, verdict = parity.verdict(thresholds)
        consistency = parity.consistency
        types[event_type] = {
            "stage": resolution.stage.value,
            "source": resolution.source,
            "live_percent": resolution.live_percent,
            "configured_stage": configured,
            "metrics_stage": metrics_stage,
            "published": int(parity.published),
            "delivered": {path: int(count) for path, count in parity.delivered.items()},
            "matches": int(parity.matches),
            "missing": int(parity.missing),
            "mismatches": int(parity.mismatches),
            "compared": int(parity.compared),
            "compared_recipients_only": int(parity.recipients_only),
            "translation_round_trips": {outcome: int(n) for outcome, n in parity.round_trips.items()},
            "consistency": None if consistency is None else round(consistency, 3),
            "safe": safe,
            "verdict": verdict,
        }
        if event_type in cohorts:  # the flag system picks the live cohort: this worker's split
            types[event_type]["provider_cohort"] = cohorts[event_type]
    return {
        "generated_at": generated_at,
        "revision": document.revision,
        "kill_switch": document.kill_switch,
        "default_stage": document.default_stage.value,
        "last_error": runtime.flags.last_error,
        "store": store_view(runtime.flags),
        "thresholds": {"min_compared": thresholds.min_compared, "min_consistency": thresholds.min_consistency},
        "connections": connections,
        "types": types,
        "legacy_only": {frame: int(count) for frame, count in legacy_only.items()},
    }


class SyntheticEvents(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(max_length=64)
    topic: str = Field(max_length=128)
    count: int = Field(1, ge=1, le=100_000)
    data: dict[str, Any] = Field(default_factory=dict)


@router.post("/events", status_code=status.HTTP_202_ACCEPTED)
async def publish_events(body: SyntheticEvents, request: Request, _: Admin) -> dict[str, Any]:
    """Publish a batch of synthetic events through the normal ingress (`origin="admin"`)."""
    _declared(request, body.type, status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        _runtime(request).catalog.parse_topic(body.topic)
    except InvalidTopicError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    bus = _runtime(request).bus
    ids = []
    for index in range(body.count):
        event = Event(type=body.type, topic=body.topic, data={**body.data, "synthetic": index})
        await bus.publish(event, origin="admin")
        ids.append(event.event_id)
    return {"published": len(ids), "first_event_id": ids[0], "last_event_id": ids[-1]}
