"""The FastAPI application factory: REST API, `/api/ws` (unified), `/metrics`, `/healthz`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from wsmigrate.bridge import admin, api
from wsmigrate.bridge.pages import install_pages
from wsmigrate.bridge.routing import legacy_view
from wsmigrate.bridge.runtime import Runtime
from wsmigrate.bridge.settings import Settings
from wsmigrate.bridge.shutdown import install_sigterm_drain
from wsmigrate.legacy.endpoint import LegacyLimits, LegacySession
from wsmigrate.metrics.exposition import CONTENT_TYPE_LATEST
from wsmigrate.metrics.exposition import render as render_metrics
from wsmigrate.unified import EventBus, current_bus
from wsmigrate.unified.endpoint import SessionLimits, UnifiedSession
from wsmigrate.unified.outbox import Outbox
from wsmigrate.unified.outbox_direct import open_outbox
from wsmigrate.unified.protocol import CloseCode
from wsmigrate.unified.ratelimit import TokenBucket


class BusContext:
    """Pure ASGI middleware making the app's bus the `current_bus` of every request."""

    def __init__(self, app: ASGIApp, bus: EventBus) -> None:
        self.app = app
        self.bus = bus

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = current_bus.set(self.bus)
        try:
            await self.app(scope, receive, send)
        finally:
            current_bus.reset(token)


def _topics_param(raw: str | None) -> list[str]:
    return [t for t in (raw or "").split(",") if t]


def create_app(settings: Settings | None = None, *, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the reference server. `registry` is injectable so tests get a fresh one."""
    runtime = Runtime(settings or Settings.from_env(), registry=registry)
    legacy_limits = LegacyLimits(
        max_bad_frames=runtime.settings.max_bad_frames, bad_frame_window_s=runtime.settings.bad_frame_window_s
    )
    limits = SessionLimits(
        outbox_capacity=runtime.settings.outbox_capacity,
        max_bad_frames=runtime.settings.max_bad_frames,
        bad_frame_window_s=runtime.settings.bad_frame_window_s,
        subscribe_rate_per_s=runtime.settings.subscribe_rate_per_s,
        subscribe_burst=runtime.settings.subscribe_burst,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        install_sigterm_drain(runtime)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="wsmigrate reference server", lifespan=lifespan)
    app.state.runtime = runtime
    app.add_middleware(BusContext, bus=runtime.bus)
    app.include_router(api.router)
    app.include_router(admin.router)

    def new_outbox(websocket: WebSocket) -> Outbox:
        return open_outbox(websocket, capacity=runtime.settings.outbox_capacity)

    async def admit(websocket: WebSocket, kind: str) -> tuple[bool, str | None]:
        """Origin, draining and authentication checks before the handshake completes, then the
        per-user quota. A refusal before `accept` is an HTTP 403 to the client."""
        refusal: tuple[int, str] | None = None
        principal = None
        if not runtime.origins.allows(websocket.headers.get("origin")):
            refusal = (CloseCode.FORBIDDEN, "origin not allowed")
        elif not runtime.accepting:
            refusal = (CloseCode.SERVICE_RESTART, "server restarting")
        elif runtime.auth.enabled:
            principal = await runtime.auth.authenticate(websocket, allow_query=True)
            if principal is None:
                refusal = (CloseCode.UNAUTHORIZED, "authentication required")
        if refusal is not None:
            runtime.metrics.connections_closed.labels(kind, "auth").inc()
            await websocket.close(*refusal)
            return False, None
        user_id = None if principal is None else principal.user_id
        if not runtime.quota.acquire(user_id):
            runtime.metrics.connections_closed.labels(kind, "limit").inc()
            await websocket.accept()
            await websocket.close(CloseCode.TOO_MANY_CONNECTIONS,
                                  f"at most {runtime.quota.limit} connections per user")
            return False, None
        return True, user_id

    async def unified_socket(websocket: WebSocket) -> None:
        admitted, user_id = await admit(websocket, "unified")
        if not admitted:
            return
        try:
            session = UnifiedSession(websocket, runtime.manager, runtime.catalog.grammar, runtime.authorize,
                                     limits=limits, user_id=user_id,
                                     metrics=runtime.metrics)
            await session.run(_topics_param(websocket.query_params.get("topics")))
        finally:
            runtime.quota.release(user_id)

    async def shared_socket(websocket: WebSocket) -> None:
        """`/api/ws`: legacy when the old query parameters are present, unified otherwise."""
        view = legacy_view(websocket.query_params)
        if view is None:
            await unified_socket(websocket)
            return
        kind = "legacy_thread" if view.thread_id is not None else "legacy_agent"
        admitted, user_id = await admit(websocket, kind)
        if not admitted:
            return
        bucket = TokenBucket(runtime.settings.subscribe_rate_per_s, runtime.settings.subscribe_burst)
        try:
            session = LegacySession(websocket, runtime.legacy, runtime.legacy_store, new_outbox, user_id=user_id,
                                    limits=legacy_limits, metrics=runtime.metrics, allow_subscribe=bucket.take)
            await session.run(thread_id=view.thread_id, agent_id=view.agent_id)
        finally:
            runtime.quota.release(user_id)

    app.add_api_websocket_route("/api/ws", shared_socket)
    app.add_api_websocket_route("/api/ws/v2", unified_socket)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        bus_healthy = runtime.bus.running and runtime.bus.backend.healthy()
        probes = runtime.probes
        healthy = bus_healthy and (probes is None or probes.healthy)
        body: dict[str, object] = {
            "status": "ok" if healthy else "degraded",
            "bus": {"url": runtime.settings.bus_url.split("@")[-1], "healthy": bus_healthy},
            "connections": {"unified": runtime.manager.connection_count - runtime.legacy.connection_count,
                            "legacy": runtime.legacy.connection_count},
            "flags_revision": runtime.flags.current().revision,
        }
        if probes is not None:
            body["probes"] = probes.status.as_dict()
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/api/dev/session")
    async def dev_session() -> JSONResponse:
        """Development only: the demo user's token, so the demo pages can sign in by themselves."""
        settings = runtime.settings
        if not (settings.dev_mode and settings.demo_token):
            return JSONResponse({"detail": "not available: development mode is off"}, status_code=404)
        return JSONResponse({"user": "demo", "token": settings.demo_token, "auth": settings.auth})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        runtime.metrics.batch.flush()  # this worker's tallies (multiprocess mode reads its files)
        return Response(render_metrics(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    install_pages(app)
    return app


def app_from_env() -> FastAPI:
    """Factory used by `wsmigrate serve` (and each uvicorn worker): settings from the environment."""
    return create_app()
