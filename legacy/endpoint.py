"""The legacy socket: one per view, as the application's old handler served it (see `legacy.views`).

Behaviour of an old per-view handler, kept: the view's target is checked (`access`), the
`on_open` frames (a history) go first, then the socket follows its target until it closes; the
application's commands are served; a socket for a target that does not exist gets an error frame
and is closed with 1008, one that is not the user's with 4403, leaving no state behind. There is
no unsubscribe and no recovery after a reconnect (a new socket starts from a fresh history).

A bad frame is answered with an error frame and the socket stays open; more than
`max_bad_frames` within `bad_frame_window_s` close it with 1008.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from wsmigrate.legacy import frames
from wsmigrate.legacy.errors import LegacyProtocolError
from wsmigrate.legacy.manager import LegacyConnectionManager, LegacyOutbox
from wsmigrate.legacy.views import LegacyProtocol, LegacyView, TargetId
from wsmigrate.metrics.registry import WsMetrics

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
FORBIDDEN = 4403
CLOSE_TIMEOUT_S = 2.0
OutboxFactory = Callable[[WebSocket], LegacyOutbox]


@dataclass(frozen=True)
class LegacyLimits:
    max_bad_frames: int = 10
    bad_frame_window_s: float = 60.0


class LegacyContext:
    """What a command handler may do on the socket whose frame it serves."""

    def __init__(self, session: LegacySession, client_id: str, message_id: Any) -> None:
        self._session = session
        self.client_id = client_id
        self.message_id = message_id

    @property
    def user_id(self) -> str | None:
        return self._session.user_id

    @property
    def hub(self) -> LegacyConnectionManager:
        """The legacy hub, for a command that broadcasts (the old `send_message`)."""
        return self._session.manager

    def reply(self, frame: frames.Frame) -> None:
        """A frame to this socket only (an answer, a history), in order with everything else."""
        self._session.manager.reply(self.client_id, frame)

    def follow(self, scope: str, target_id: TargetId) -> None:
        """This socket also receives what is broadcast to (`scope`, `target_id`) from now on."""
        self._session.manager.follow(self.client_id, scope, target_id)

    def throttle(self) -> None:
        """Refuse the command when the socket follows too fast (the subscribe rate limit)."""
        if not self._session.allow_subscribe():
            raise LegacyProtocolError("Too many subscribe requests; slow down", message_id=self.message_id)

    async def require(self, scope: str, target_id: TargetId) -> None:
        """Raise the legacy error for a target that does not exist or is not this user's."""
        refusal = await self._session.refusal(scope, target_id)
        if refusal is not None:
            raise LegacyProtocolError(refusal[1], message_id=self.message_id)


class LegacySession:
    """Serves one legacy socket until it closes."""

    def __init__(
        self,
        websocket: WebSocket,
        manager: LegacyConnectionManager,
        protocol: LegacyProtocol,
        outbox_factory: OutboxFactory,
        *,
        user_id: str | None = None,
        limits: LegacyLimits | None = None,
        metrics: WsMetrics | None = None,
        allow_subscribe: Callable[[], bool] | None = None,
    ) -> None:
        self.websocket = websocket
        self.manager = manager
        self.protocol = protocol
        self.outbox_factory = outbox_factory
        self.user_id = user_id
        self.limits = limits or LegacyLimits()
        self.metrics = metrics
        self._bad_frames: deque[float] = deque()
        self.allow_subscribe = allow_subscribe or (lambda: True)
        self.close_reason = "normal"

    async def run(self, view: LegacyView, target_id: TargetId | None) -> None:
        await self.websocket.accept()
        outbox = self.outbox_factory(self.websocket)
        outbox.start()
        client_id: str | None = None
        try:
            client_id = await self._open_view(outbox, view, target_id)
            if client_id is not None:
                await self._read_loop(client_id, outbox)
        finally:
            if client_id is not None:
                self.manager.disconnect(client_id)
            await outbox.finish(CLOSE_TIMEOUT_S)
            if self.metrics:
                self.metrics.connections_closed.labels(view.kind, self.close_reason).inc()

    async def refusal(self, scope: str, target_id: TargetId | None,
                      view: LegacyView | None = None) -> tuple[int, str] | None:
        """(close code, error text) when this user may not follow the target."""
        name = view.label(target_id) if view is not None else f"{scope.capitalize()} {target_id}"
        if target_id is None:
            return POLICY_VIOLATION, f"{name} not found"
        verdict = await self.protocol.access(scope, target_id, self.user_id)
        if verdict == "not_found":
            return POLICY_VIOLATION, f"{name} not found"
        if verdict == "forbidden":
            return FORBIDDEN, f"{name}: forbidden"
        return None

    def _refuse(self, outbox: LegacyOutbox, code: int, text: str) -> None:
        outbox.put(frames.encode(self.protocol.error_frame(text, None, None)))
        outbox.close_after_flush(code, text)
        self.close_reason = "refused"

    async def _open_view(self, outbox: LegacyOutbox, view: LegacyView, target_id: TargetId | None) -> str | None:
        """Register the socket for its view, or refuse it (error frame, close, no state left)."""
        refusal = await self.refusal(view.scope, target_id, view)
        if refusal is not None:
            self._refuse(outbox, *refusal)
            return None
        assert target_id is not None
        opening = await view.on_open(target_id, self.user_id) if view.on_open is not None else ()
        if opening is None:  # deleted in between
            self._refuse(outbox, POLICY_VIOLATION, f"{view.label(target_id)} not found")
            return None
        client_id = self.manager.connect(outbox, kind=view.kind, user_id=self.user_id)
        self.manager.follow(client_id, view.scope, target_id)
        for frame in opening:
            self.manager.reply(client_id, frame)
        return client_id

    async def _read_loop(self, client_id: str, outbox: LegacyOutbox) -> None:
        while not outbox.closed:
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            try:
                text = message.get("text")
                if text is None:
                    raise LegacyProtocolError("Binary frames are not supported")
                await self._handle(client_id, frames.parse_json_frame(text))
            except LegacyProtocolError as exc:
                self.manager.reply(client_id, self.protocol.error_frame(exc.text, exc.message_id, exc.details))
                if self.metrics:
                    self.metrics.protocol_errors.labels("legacy", "bad_message").inc()
                if self._abusive():
                    self.close_reason = "abuse"
                    outbox.close_after_flush(POLICY_VIOLATION, "too many bad frames")
                    return

    def _abusive(self) -> bool:
        now = time.monotonic()
        self._bad_frames.append(now)
        while self._bad_frames and self._bad_frames[0] < now - self.limits.bad_frame_window_s:
            self._bad_frames.popleft()
        return len(self._bad_frames) > self.limits.max_bad_frames

    async def _handle(self, client_id: str, raw: Any) -> None:
        message_id = raw.get("message_id") if isinstance(raw, dict) else None
        kind = raw.get("type") if isinstance(raw, dict) else None
        command = self.protocol.command(kind)
        if command is None:
            text = f"Unknown message type: {kind}" if isinstance(kind, str) else "Invalid message"
            raise LegacyProtocolError(text, message_id=message_id)
        try:
            frame = command.model.model_validate(raw)
        except ValidationError as exc:
            details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
            raise LegacyProtocolError("Invalid message", message_id=message_id, details=details) from None
        context = LegacyContext(self, client_id, message_id if isinstance(message_id, str | int) else None)
        try:
            await command.handle(context, frame)
        except LegacyProtocolError as exc:
            if exc.message_id is None:
                exc.message_id = context.message_id
            raise
