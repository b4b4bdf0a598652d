"""`WsMigrate`: wsmigrate mounted into an application's own FastAPI app.

    wsm = WsMigrate(Declaration(catalog, translations, legacy_protocol, authorize), settings,
                    authenticate=my_authenticate)
    app = FastAPI()
    wsm.install(app)          # sockets, /metrics, /healthz, /api/admin, /ops, /static; lifespan composed

`install` gives the app its WebSocket endpoints (the unified endpoint at each of `unified_paths`;
each declared legacy view at its own path, a path shared with the unified endpoint dispatching on
the view's query parameter), `/metrics`, `/healthz`, the admin API (enabled by an explicit admin
token), the `/ops` console, the browser client under `/static`, a middleware that makes the bus the
`current_bus` of every request (for `@publish_event`), and wraps the app's lifespan so wsmigrate
starts before the app's own start-up and stops after its shutdown. An app that composes lifespans
itself uses `wsm.lifespan()` instead and calls `install(app, lifespan=False)`.

Everything runtime-wide (bus, flags, comparator expiry, heartbeat, stage export, probes, Redis and
Prometheus multiprocess mode) is owned by `wsmigrate.bridge.server.runtime.Runtime`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIWebSocketRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from wsmigrate.bridge.ops import admin
from wsmigrate.bridge.server.guards import Authenticate
from wsmigrate.bridge.server.pages import STATIC_PACKAGE, install_ops_page
from wsmigrate.bridge.server.probes import PROBE_KIND, PROBE_UNIFIED_KIND
from wsmigrate.bridge.server.redact import install_redaction
from wsmigrate.bridge.server.runtime import Declaration, Runtime
from wsmigrate.bridge.server.settings import Settings
from wsmigrate.bridge.server.shutdown import install_sigterm_drain
from wsmigrate.legacy.endpoint import LegacyLimits, LegacySession
from wsmigrate.legacy.manager import LegacyConnectionManager
from wsmigrate.legacy.views import LegacyView, TargetId, select_view
from wsmigrate.metrics.exposition import CONTENT_TYPE_LATEST
from wsmigrate.metrics.exposition import render as render_metrics
from wsmigrate.metrics.registry import UNIFIED_KIND
from wsmigrate.unified import EventBus, current_bus
from wsmigrate.unified.decorator import current_outbox
from wsmigrate.unified.endpoint import SessionLimits, UnifiedSession
from wsmigrate.unified.errors import BusUnavailableError
from wsmigrate.unified.outbox import Outbox
from wsmigrate.unified.outbox_direct import open_outbox
from wsmigrate.unified.protocol import CloseCode
from wsmigrate.unified.ratelimit import TokenBucket

if TYPE_CHECKING:
    from wsmigrate.unified.transactional_outbox import TransactionalOutbox

log = logging.getLogger(__name__)

PROBE_USER = "wsmigrate-probe"
NOT_STARTED = "wsmigrate is not started: its lifespan did not run (install it on the top-level app)"


SocketEndpoint = Callable[[WebSocket], Awaitable[None]]


def socket_shortcuts(app: FastAPI, endpoints: Mapping[str, SocketEndpoint]) -> dict[str, SocketEndpoint]:
    """Which of wsmigrate's socket paths `BusContext` may answer itself, skipping the router.

    Only where skipping changes nothing the application set up: no middleware of the application
    sits below `BusContext` (middleware added before `install`), the app declares no dependencies
    of its own (FastAPI runs them for every route, sockets included), and the route the router
    would pick for the path is wsmigrate's (not a route or mount of the application registered
    earlier). Read when the middleware stack is built, i.e. once the application is configured."""
    innermost: object = app.user_middleware[-1].cls if app.user_middleware else None
    if innermost is not BusContext or app.router.dependencies:
        return {}
    shortcuts: dict[str, SocketEndpoint] = {}
    for path, endpoint in endpoints.items():
        if "{" in path:  # a path view (`/ws/board/{board_id}`): the router extracts its parameters
            continue
        probe: Scope = {"type": "websocket", "path": path, "root_path": "", "headers": []}
        chosen = next((r for r in app.router.routes if r.matches(probe)[0] is Match.FULL), None)
        if isinstance(chosen, APIWebSocketRoute) and chosen.endpoint is endpoint:
            shortcuts[path] = endpoint
    return shortcuts


class BusContext:
    """Pure ASGI middleware making the app's bus the `current_bus` of every request (and its
    transactional outbox, if it has one, the `current_outbox`); it also answers wsmigrate's own
    sockets itself.

    Why sockets skip the router. A socket lives as long as its client, and every ASGI layer it
    passed through stays suspended with it: Starlette's exception middleware, FastAPI's exit stacks
    (a deque each), the router, the route's dependency machinery and its copy of the scope, about
    a fifth of a unified socket's memory (docs/benchmarks.md, "Idle connections"). Below this
    middleware there is nothing of the application's own when `socket_shortcuts` says so, and
    then a WebSocket to one of those paths goes straight to wsmigrate's endpoint, the same
    function the router would have called. Everything above (the application's middleware added
    after `install`, uvicorn's) runs as before. `shortcuts` is called once, when Starlette builds
    the stack."""

    def __init__(self, app: ASGIApp, bus: EventBus, outbox: TransactionalOutbox | None = None,
                 shortcuts: Callable[[], dict[str, SocketEndpoint]] | None = None) -> None:
        self.app = app
        self.bus = bus
        self.outbox = outbox
        self.sockets = shortcuts() if shortcuts is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = current_bus.set(self.bus)
        outbox_token = current_outbox.set(self.outbox)
        try:
            endpoint = self.sockets.get(scope["path"]) if scope["type"] == "websocket" else None
            if endpoint is not None and not scope.get("root_path"):
                await endpoint(WebSocket(scope, receive, send))
            else:
                await self.app(scope, receive, send)
        finally:
            current_outbox.reset(outbox_token)
            current_bus.reset(token)


async def _bus_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """A publish that could not reach the bus is a 503 that says what happened, never a 500.

    Outside the transactional outbox the route may have committed already: its change is stored
    and not announced, which is why committed changes belong in the outbox (`session=`)."""
    log.error("request failed: the bus is unavailable (%s)", exc)
    return JSONResponse({"detail": "the event bus is unavailable: a change this request made may be stored "
                                   "without having been announced"}, status_code=503)


def _topics_param(raw: str | None) -> list[str]:
    return [t for t in (raw or "").split(",") if t]


class WsMigrate:
    """wsmigrate for one application (see module docstring)."""

    def __init__(
        self,
        declaration: Declaration,
        settings: Settings | None = None,
        *,
        authenticate: Authenticate | None = None,
        unified_paths: Sequence[str] = ("/api/ws",),
        registry: CollectorRegistry | None = None,
        outbox: TransactionalOutbox | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        if self.settings.auth and authenticate is None:
            raise ValueError("WSMIGRATE_AUTH is on but no authenticate hook was given: pass "
                             "authenticate=..., or set WSMIGRATE_AUTH=off for development")
        if not unified_paths:
            raise ValueError("at least one unified path is needed")
        self.unified_paths = tuple(unified_paths)
        self.authenticate = authenticate
        self.runtime = Runtime(declaration, self.settings, unified_path=self.unified_paths[0], registry=registry,
                               outbox=outbox)
        settings_ = self.settings
        self._legacy_limits = LegacyLimits(max_bad_frames=settings_.max_bad_frames,
                                           bad_frame_window_s=settings_.bad_frame_window_s)
        self._limits = SessionLimits(outbox_capacity=settings_.outbox_capacity,
                                     max_bad_frames=settings_.max_bad_frames,
                                     bad_frame_window_s=settings_.bad_frame_window_s,
                                     subscribe_rate_per_s=settings_.subscribe_rate_per_s,
                                     subscribe_burst=settings_.subscribe_burst)

    # -- what the application uses ---------------------------------------------------------------

    @property
    def bus(self) -> EventBus:
        return self.runtime.bus

    @property
    def hub(self) -> LegacyConnectionManager:
        """The legacy hub the application's old manager delegates its broadcasts to."""
        return self.runtime.legacy

    @asynccontextmanager
    async def lifespan(self, _: Any = None) -> AsyncIterator[None]:
        """Start wsmigrate (bus, flags, timers, probes) and stop it afterwards."""
        await self.runtime.start()
        install_sigterm_drain(self.runtime)
        try:
            yield
        finally:
            await self.runtime.stop()

    def install(self, app: FastAPI, *, lifespan: bool = True, static_dir: Path | None = None) -> None:
        """Mount wsmigrate into `app` (see module docstring). `static_dir`: the app's own files,
        served under `/static` beside wsmigrate's (the app's first)."""
        app.state.runtime = self.runtime
        app.state.wsmigrate = self
        install_redaction()  # `?token=` never reaches the servers' request logs
        sockets: dict[str, SocketEndpoint] = {}
        app.add_middleware(BusContext, bus=self.runtime.bus, outbox=self.runtime.outbox,
                           shortcuts=lambda: socket_shortcuts(app, sockets))
        app.add_exception_handler(BusUnavailableError, _bus_unavailable)
        if lifespan:
            self._wrap_lifespan(app)
        for path in self.unified_paths:
            sockets[path] = self._shared_socket(path)
        for path in self.runtime.legacy_protocol.paths():
            if path not in self.unified_paths:
                sockets[path] = self._legacy_socket(path)
        for path, endpoint in sockets.items():
            app.add_api_websocket_route(path, endpoint)
        app.add_api_route("/healthz", self._healthz, methods=["GET"], include_in_schema=False)
        app.add_api_route("/metrics", self._metrics, methods=["GET"], include_in_schema=False)
        app.include_router(admin.router)
        install_ops_page(app)
        app.mount("/static", StaticFiles(directory=static_dir, packages=[STATIC_PACKAGE]), name="static")

    def _wrap_lifespan(self, app: FastAPI) -> None:
        inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

        @asynccontextmanager
        async def composed(application: Any) -> AsyncIterator[Any]:
            async with self.lifespan(application), inner(application) as state:
                try:
                    yield state
                finally:
                    # Before the application's own teardown, which may dispose the engine the
                    # outbox relay reads: what commits from here on waits in the table.
                    await self.runtime.stop_relay()

        app.router.lifespan_context = composed

    # -- sockets -----------------------------------------------------------------------------------

    async def _user_of(self, websocket: WebSocket) -> tuple[bool, str | None]:
        """(authenticated, user id): the probes' own credential, or the application's hook."""
        scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self.runtime.probe_token.encode()):
            return True, PROBE_USER  # with auth off too: the probes' sockets are labelled apart
        if not self.settings.auth:
            return True, None
        assert self.authenticate is not None
        user_id = await self.authenticate(websocket)  # a WebSocket is an HTTPConnection
        return user_id is not None, user_id

    async def _admit(self, websocket: WebSocket, kind: str) -> tuple[bool, str | None]:
        """Origin, start-up, draining and authentication checks, then the per-user quota.

        A refusal completes the handshake and closes at once with a code that says why (4403
        origin not allowed, 1012 starting or restarting, 4401 not authenticated, 4429 too many
        connections): a browser cannot read the HTTP status of a refused handshake, only a close
        code, and a client must tell "sign in" from "try again later". Nothing is sent or read
        before the close."""
        runtime = self.runtime
        refusal: tuple[int, str] | None = None
        user_id = None
        if not runtime.origins.allows(websocket.headers.get("origin")):
            refusal = (CloseCode.FORBIDDEN, "origin not allowed")
        elif not runtime.started:
            log.error(NOT_STARTED)
            refusal = (CloseCode.SERVICE_RESTART, "server starting")
        elif not runtime.accepting:
            refusal = (CloseCode.SERVICE_RESTART, "server restarting")
        else:
            authenticated, user_id = await self._user_of(websocket)
            if not authenticated:
                refusal = (CloseCode.UNAUTHORIZED, "authentication required")
        if refusal is not None:
            runtime.metrics.connections_closed.labels(kind, "auth").inc()
            await websocket.accept()
            await websocket.close(*refusal)
            return False, None
        if user_id != PROBE_USER and not runtime.quota.acquire(user_id):
            runtime.metrics.connections_closed.labels(kind, "limit").inc()
            await websocket.accept()
            await websocket.close(CloseCode.TOO_MANY_CONNECTIONS, f"at most {runtime.quota.limit} connections per user")
            return False, None
        return True, user_id

    def _release(self, user_id: str | None) -> None:
        if user_id != PROBE_USER:
            self.runtime.quota.release(user_id)

    async def _unified(self, websocket: WebSocket) -> None:
        admitted, user_id = await self._admit(websocket, "unified")
        if not admitted:
            return
        runtime = self.runtime
        try:
            session = UnifiedSession(websocket, runtime.manager, runtime.catalog.grammar, runtime.authorize,
                                     limits=self._limits, user_id=user_id, metrics=runtime.metrics,
                                     kind=PROBE_UNIFIED_KIND if user_id == PROBE_USER else UNIFIED_KIND)
            await session.run(_topics_param(websocket.query_params.get("topics")))
        finally:
            self._release(user_id)

    async def _legacy(self, websocket: WebSocket, view: LegacyView, target_id: TargetId | None) -> None:
        admitted, user_id = await self._admit(websocket, view.kind)
        if not admitted:
            return
        runtime = self.runtime
        bucket = TokenBucket(self.settings.subscribe_rate_per_s, self.settings.subscribe_burst)
        try:
            session = LegacySession(websocket, runtime.legacy, runtime.legacy_protocol, self._new_outbox,
                                    user_id=user_id, limits=self._legacy_limits, metrics=runtime.metrics,
                                    allow_subscribe=bucket.take)
            await session.run(view, target_id)
        finally:
            self._release(user_id)

    def _new_outbox(self, websocket: WebSocket) -> Outbox:
        return open_outbox(websocket, capacity=self.settings.outbox_capacity)

    def _shared_socket(self, path: str) -> SocketEndpoint:
        """The unified endpoint at `path`, or a legacy view declared at the same path when the
        request carries that view's query parameter."""
        views = self.runtime.legacy_protocol.views_at(path)

        async def endpoint(websocket: WebSocket) -> None:
            selected = select_view(views, websocket.query_params, websocket.path_params)
            if selected is None:
                await self._unified(websocket)
            else:
                await self._legacy(websocket, *selected)

        return endpoint

    def _legacy_socket(self, path: str) -> SocketEndpoint:
        views = self.runtime.legacy_protocol.views_at(path)

        async def endpoint(websocket: WebSocket) -> None:
            selected = select_view(views, websocket.query_params, websocket.path_params)
            if selected is None:  # a path view always selects itself; a query view may be absent
                selected = (views[0], None)
            await self._legacy(websocket, *selected)

        return endpoint

    # -- operations ------------------------------------------------------------------------------

    async def _healthz(self) -> JSONResponse:
        runtime = self.runtime
        bus_healthy = runtime.started and runtime.bus.running and runtime.bus.backend.healthy()
        probes = runtime.probes
        healthy = bus_healthy and (probes is None or probes.healthy)
        probe_legacy = sum(1 for c in runtime.legacy.connections() if c.kind == PROBE_KIND)
        probe_unified = sum(1 for c in runtime.manager.connections() if c.kind == PROBE_UNIFIED_KIND)
        body: dict[str, object] = {
            "status": "ok" if healthy else "degraded",
            "bus": {"url": self.settings.bus_url.split("@")[-1], "healthy": bus_healthy},
            "connections": {"unified": runtime.manager.connection_count - runtime.legacy.connection_count
                            - probe_unified, "legacy": runtime.legacy.connection_count - probe_legacy,
                            "probes": probe_legacy + probe_unified},
            "flags_revision": runtime.flags.current().revision,
            "flags": {"store": runtime.flags.kind, "error": runtime.flags.last_error},
        }
        if runtime.relay is not None:
            backlog = runtime.relay.last_backlog
            body["outbox"] = {"backlog": backlog.rows, "oldest_ms": backlog.oldest_ms,
                              "publishing_directly": not runtime.relay.backlogged}
        if probes is not None:
            body["probes"] = probes.status.as_dict()
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def _metrics(self) -> Response:
        self.runtime.metrics.batch.flush()  # this worker's tallies (multiprocess mode reads its files)
        return Response(render_metrics(self.runtime.registry), media_type=CONTENT_TYPE_LATEST)
