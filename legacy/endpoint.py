"""The legacy socket: `/api/ws?thread_id=45` (chat view) or `/api/ws?agent_id=7` (dashboard view).

Behaviour of the old handler, kept: a thread socket is answered with `thread_history` first; a
socket for a thread or agent that does not exist gets an `error` frame and is closed with 1008,
leaving no state behind; `subscribe_thread`, `send_message` and `ping` are served; there is no
unsubscribe and no recovery after a reconnect (a new socket starts from a fresh history).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

from wsmigrate.legacy import frames
from wsmigrate.legacy.errors import LegacyProtocolError
from wsmigrate.legacy.manager import LegacyConnectionManager, LegacyOutbox
from wsmigrate.legacy.store import LegacyStore
from wsmigrate.metrics.registry import WsMetrics

log = logging.getLogger(__name__)

LEGACY_THREAD = "legacy_thread"
LEGACY_AGENT = "legacy_agent"
POLICY_VIOLATION = 1008
FORBIDDEN = 4403
CLOSE_TIMEOUT_S = 2.0
OutboxFactory = Callable[[WebSocket], LegacyOutbox]


@dataclass(frozen=True)
class LegacyLimits:
    max_bad_frames: int = 10
    bad_frame_window_s: float = 60.0


class LegacySession:
    """Serves one legacy socket until it closes."""

    def __init__(
        self,
        websocket: WebSocket,
        manager: LegacyConnectionManager,
        store: LegacyStore,
        outbox_factory: OutboxFactory,
        *,
        user_id: str | None = None,
        limits: LegacyLimits | None = None,
        metrics: WsMetrics | None = None,
        allow_subscribe: Callable[[], bool] | None = None,
    ) -> None:
        self.websocket = websocket
        self.manager = manager
        self.store = store
        self.outbox_factory = outbox_factory
        self.user_id = user_id
        self.limits = limits or LegacyLimits()
        self.metrics = metrics
        self._bad_frames: deque[float] = deque()
        self._allow_subscribe = allow_subscribe or (lambda: True)

    async def run(self, *, thread_id: int | None, agent_id: int | None) -> None:
        await self.websocket.accept()
        outbox = self.outbox_factory(self.websocket)
        outbox.start()
        client_id: str | None = None
        try:
            client_id = await self._open_view(outbox, thread_id, agent_id)
            if client_id is not None:
                await self._read_loop(client_id, outbox)
        finally:
            if client_id is not None:
                self.manager.disconnect(client_id)
            await outbox.finish(CLOSE_TIMEOUT_S)

    async def _open_view(self, outbox: LegacyOutbox, thread_id: int | None, agent_id: int | None) -> str | None:
        """Register the socket for its view, or refuse it (error frame, close, no state left)."""
        scope: Literal["thread", "agent"] = "thread" if thread_id is not None else "agent"
        target = thread_id if thread_id is not None else agent_id
        assert target is not None
        refusal = await self._refusal(scope, target)
        if refusal is not None:
            outbox.put(frames.encode(frames.error(refusal[1])))
            outbox.close_after_flush(refusal[0], refusal[1])
            return None
        if thread_id is not None:
            history = await self.store.thread_history(thread_id)
            if history is None:  # deleted in between
                outbox.put(frames.encode(frames.error(f"Thread {thread_id} not found")))
                outbox.close_after_flush(POLICY_VIOLATION, "not found")
                return None
            client_id = self.manager.connect(outbox, kind=LEGACY_THREAD, user_id=self.user_id)
            self.manager.follow(client_id, "thread", thread_id)
            self.manager.reply(client_id, frames.thread_history(thread_id, history))
            return client_id
        client_id = self.manager.connect(outbox, kind=LEGACY_AGENT, user_id=self.user_id)
        self.manager.follow(client_id, "agent", target)
        return client_id

    async def _refusal(self, scope: Literal["thread", "agent"], target: int) -> tuple[int, str] | None:
        """(close code, error text) when this user may not follow the thread or agent."""
        verdict = await self.store.access(scope, target, self.user_id)
        name = f"{scope.capitalize()} {target}"
        if verdict == "not_found":
            return POLICY_VIOLATION, f"{name} not found"
        if verdict == "forbidden":
            return FORBIDDEN, f"{name}: forbidden"
        return None

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
                await self._handle(client_id, frames.parse_client_frame(text))
            except LegacyProtocolError as exc:
                self.manager.reply(client_id, frames.error(exc.text, message_id=exc.message_id, details=exc.details))
                if self.metrics:
                    self.metrics.protocol_errors.labels("legacy", "bad_message").inc()
                if self._abusive():
                    outbox.close_after_flush(POLICY_VIOLATION, "too many bad frames")
                    return

    def _abusive(self) -> bool:
        now = time.monotonic()
        self._bad_frames.append(now)
        while self._bad_frames and self._bad_frames[0] < now - self.limits.bad_frame_window_s:
            self._bad_frames.popleft()
        return len(self._bad_frames) > self.limits.max_bad_frames

    async def _handle(self, client_id: str, frame: frames.LegacyClientFrame) -> None:
        if isinstance(frame, frames.Ping):
            self.manager.reply(client_id, frames.pong(frame.timestamp))
        elif isinstance(frame, frames.SubscribeThread):
            if not self._allow_subscribe():
                raise LegacyProtocolError("Too many subscribe requests; slow down", message_id=frame.message_id)
            refusal = await self._refusal("thread", frame.thread_id)
            history = await self.store.thread_history(frame.thread_id) if refusal is None else None
            if history is None:
                text = refusal[1] if refusal else f"Thread {frame.thread_id} not found"
                raise LegacyProtocolError(text, message_id=frame.message_id)
            self.manager.follow(client_id, "thread", frame.thread_id)
            self.manager.reply(client_id, frames.thread_history(frame.thread_id, history))
        else:
            refusal = await self._refusal("thread", frame.thread_id)
            message = await self.store.add_message(frame.thread_id, frame.content) if refusal is None else None
            if message is None:
                text = refusal[1] if refusal else f"Thread {frame.thread_id} not found"
                raise LegacyProtocolError(text, message_id=frame.message_id)
            await self.manager.broadcast("thread", frame.thread_id, frames.thread_message(message))
