"""The unified WebSocket session: one socket per client, topics subscribed and unsubscribed on it.

The session reads client frames, answers each on the connection's outbox (so replies and events
stay in order), and leaves no state behind when the socket goes. A bad frame is answered with an
`error` frame and the connection stays open; only repeated abuse (more than `max_bad_frames` bad
frames within `bad_frame_window_s`, each refused topic of a subscribe counting as one: probing for
ids is abuse too) closes it with 1008.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

from wsmigrate.metrics import WsMetrics
from wsmigrate.unified.errors import BusUnavailableError, InvalidTopicError
from wsmigrate.unified.manager import Connection, ConnectionManager
from wsmigrate.unified.outbox import DEFAULT_OUTBOX_CAPACITY
from wsmigrate.unified.outbox_direct import open_outbox
from wsmigrate.unified.protocol import (
    CloseCode,
    ErrorCode,
    PingRequest,
    Pong,
    PongReply,
    ProtocolError,
    SubscribeRequest,
    UnsubscribedAck,
    UnsubscribeRequest,
    error_frame,
    parse_client_frame,
)
from wsmigrate.unified.publication import Position
from wsmigrate.unified.ratelimit import TokenBucket
from wsmigrate.unified.topics import PROBE_TOPIC, Topic, TopicGrammar

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0


Verdict = Literal["allow", "not_found", "forbidden"]
# The application's access rule: one call for all the topics of one subscribe frame (so that it can
# answer them with one query), a verdict per topic name. A topic missing from the answer is refused.
Authorize = Callable[[str | None, Sequence[Topic]], Awaitable[Mapping[str, Verdict]]]


async def allow_all(user_id: str | None, topics: Sequence[Topic]) -> Mapping[str, Verdict]:
    """The rule of an application without per-resource access control: every valid topic."""
    return {topic.name: "allow" for topic in topics}


@dataclass(frozen=True)
class SessionLimits:
    """Per-connection limits of the unified endpoint (documented in docs/protocol.md)."""

    outbox_capacity: int = DEFAULT_OUTBOX_CAPACITY
    max_bad_frames: int = 10
    bad_frame_window_s: float = 60.0
    subscribe_rate_per_s: float = 10.0
    subscribe_burst: int = 20


class UnifiedSession:
    """Serves one accepted unified WebSocket until it closes."""

    def __init__(
        self,
        websocket: WebSocket,
        manager: ConnectionManager,
        grammar: TopicGrammar,
        authorize: Authorize = allow_all,
        *,
        limits: SessionLimits | None = None,
        user_id: str | None = None,
        metrics: WsMetrics | None = None,
        kind: str = "unified",
    ) -> None:
        self.websocket = websocket
        self.kind = kind  # the connections' metric label: "unified", or wsmigrate's own probe clients
        self.manager = manager
        self.grammar = grammar
        self.authorize = authorize
        self.limits = limits or SessionLimits()
        self.user_id = user_id
        self.metrics = metrics
        self._bad_frames: deque[float] | None = None  # created at the first bad frame (a deque is ~0.8 KiB)
        self._subscribes = TokenBucket(self.limits.subscribe_rate_per_s, self.limits.subscribe_burst)
        self.close_reason = "normal"
        self.connection: Connection | None = None

    def _on_overflow(self) -> None:
        self.close_reason = "slow_consumer"

    async def run(self, initial_topics: list[str] | None = None) -> None:
        await self.websocket.accept()
        outbox = open_outbox(self.websocket, capacity=self.limits.outbox_capacity, on_overflow=self._on_overflow)
        connection = self.manager.add(outbox, kind=self.kind, user_id=self.user_id)
        self.connection = connection
        outbox.start()
        try:
            if initial_topics:
                await self._subscribe(connection, SubscribeRequest(type="subscribe", topics=initial_topics))
            await self._read_loop(connection)
        finally:
            self.manager.remove(connection.client_id)
            await outbox.finish(CLOSE_TIMEOUT_S)
            self.close_reason = connection.close_reason or self.close_reason
            if self.metrics:
                self.metrics.connections_closed.labels(self.kind, self.close_reason).inc()

    async def _read_loop(self, connection: Connection) -> None:
        while not connection.outbox.closed:
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            connection.seen()
            text = message.get("text")
            try:
                if text is None:
                    raise ProtocolError(ErrorCode.BAD_MESSAGE, "binary frames are not supported; send JSON text")
                await self._handle(connection, text)
                if self.close_reason == "abuse":  # a subscribe refused too many topics: closing
                    return
            except ProtocolError as error:
                self._reply_error(connection, error)
                if self._abusive():
                    self.close_reason = "abuse"
                    connection.outbox.close_after_flush(CloseCode.POLICY_VIOLATION, "too many bad frames")
                    return

    def _abusive(self, strikes: int = 1) -> bool:
        """Count `strikes` bad frames (or refused topics); True once the budget is exceeded."""
        now = time.monotonic()
        window = self._bad_frames
        if window is None:
            window = self._bad_frames = deque()
        window.extend([now] * min(strikes, self.limits.max_bad_frames + 1))
        while window and window[0] < now - self.limits.bad_frame_window_s:
            window.popleft()
        return len(window) > self.limits.max_bad_frames

    def _reply_error(self, connection: Connection, error: ProtocolError, topic: str | None = None) -> None:
        if self.metrics:
            self.metrics.protocol_errors.labels("unified", error.code.value).inc()
        connection.outbox.put(error_frame(error, topic=topic))

    async def _handle(self, connection: Connection, text: str) -> None:
        frame = parse_client_frame(text)
        if isinstance(frame, SubscribeRequest):
            await self._subscribe(connection, frame)
        elif isinstance(frame, UnsubscribeRequest):
            removed = self.manager.unsubscribe(connection, frame.topics)
            ack = UnsubscribedAck(message_id=frame.message_id, topics=removed)
            connection.outbox.put(ack.model_dump_json())
        elif isinstance(frame, PingRequest):
            connection.outbox.put(Pong(message_id=frame.message_id).model_dump_json())
        elif isinstance(frame, PongReply):
            pass  # heartbeat answer; the read itself proves liveness

    async def _subscribe(self, connection: Connection, request: SubscribeRequest) -> None:
        if not self._subscribes.take():
            raise ProtocolError(ErrorCode.RATE_LIMITED, f"at most {self.limits.subscribe_rate_per_s:g} subscribe "
                                f"requests per second (burst {self.limits.subscribe_burst})",
                                message_id=request.message_id)
        parsed: list[Topic] = []
        refused = 0  # invalid, unknown or forbidden topics: each counts toward the bad-frame budget
        for raw in dict.fromkeys(request.topics):
            try:
                parsed.append(self.grammar.parse(raw))
            except InvalidTopicError as exc:
                refused += 1
                self._reply_error(connection, ProtocolError(ErrorCode.INVALID_TOPIC, str(exc),
                                                            message_id=request.message_id), raw)
        asked = [t for t in parsed if t.name != PROBE_TOPIC]  # wsmigrate's own topic: not the app's to rule
        verdicts = await self.authorize(self.user_id, asked) if asked else {}
        accepted: list[str] = []
        for topic in parsed:
            raw = topic.name
            verdict = "allow" if raw == PROBE_TOPIC else verdicts.get(raw, "forbidden")
            if verdict != "allow":
                refused += 1
                code, text = ((ErrorCode.NOT_FOUND, f"{raw}: not found") if verdict == "not_found"
                              else (ErrorCode.FORBIDDEN, f"{raw}: not allowed"))
                self._reply_error(connection, ProtocolError(code, text, message_id=request.message_id), raw)
                continue
            if raw not in connection.topics and len(connection.topics) + len(accepted) >= self.manager.max_topics:
                self._reply_error(connection, ProtocolError(
                    ErrorCode.TOO_MANY_TOPICS, f"at most {self.manager.max_topics} topics per connection",
                    message_id=request.message_id), raw)
                continue
            accepted.append(raw)
        if refused and self._abusive(refused):
            self.close_reason = "abuse"  # probing for ids: as many refusals as bad frames allowed
            connection.outbox.close_after_flush(CloseCode.POLICY_VIOLATION, "too many refused topics")
            return
        since = {t: Position(p.epoch, p.seq, p.event_id) for t, p in request.since.items() if t in accepted}
        try:
            await self.manager.subscribe(connection, accepted, since, message_id=request.message_id)
        except BusUnavailableError as exc:
            # Not subscribed: a position this worker cannot honour would mean a silent gap.
            self.manager.unsubscribe(connection, accepted)
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"event bus unavailable, retry the subscribe: {exc}",
                                message_id=request.message_id) from None
