"""The unified wire protocol: pydantic models for every frame, error codes and close codes.

See docs/protocol.md for the prose version with examples. Parsing is pure (no I/O) so the whole
grammar is testable without sockets.
"""

from __future__ import annotations

import json
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from wsmigrate.unified.errors import UnifiedError
from wsmigrate.unified.events import StreamPosition

MAX_FRAME_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
MESSAGE_ID_MAX = 128


class CloseCode(IntEnum):
    """WebSocket close codes used by wsmigrate (RFC 6455 and the 4000-4999 private range)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    HEARTBEAT_TIMEOUT = 4408
    TOO_MANY_CONNECTIONS = 4429


class ErrorCode(StrEnum):
    INVALID_TOPIC = "invalid_topic"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    BAD_MESSAGE = "bad_message"
    TOO_MANY_TOPICS = "too_many_topics"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class ProtocolError(UnifiedError):
    """A client frame that cannot be served; answered with an `error` frame."""

    def __init__(self, code: ErrorCode, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_id = message_id


# -- client -> server ---------------------------------------------------------------------------

MessageId = Annotated[str, Field(max_length=MESSAGE_ID_MAX)]


class _ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: MessageId | None = None


class SubscribeRequest(_ClientFrame):
    type: Literal["subscribe"]
    topics: list[str] = Field(max_length=1000)
    since: dict[str, StreamPosition] = Field(default_factory=dict)


class UnsubscribeRequest(_ClientFrame):
    type: Literal["unsubscribe"]
    topics: list[str] = Field(max_length=1000)


class PingRequest(_ClientFrame):
    type: Literal["ping"]


class PongReply(_ClientFrame):
    """A client's answer to the server heartbeat `{"type":"ping"}`."""

    type: Literal["pong"]


ClientFrame = Annotated[
    SubscribeRequest | UnsubscribeRequest | PingRequest | PongReply, Field(discriminator="type")
]
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping early past `limit`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_client_frame(text: str) -> ClientFrame:
    """Validate one text frame, raising `ProtocolError(bad_message)` with a helpful message."""
    if len(text.encode("utf-8")) > MAX_FRAME_BYTES:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame larger than {MAX_FRAME_BYTES} bytes")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"malformed JSON: {exc}") from None
    message_id = raw.get("message_id") if isinstance(raw, dict) else None
    message_id = message_id if isinstance(message_id, str) and len(message_id) <= MESSAGE_ID_MAX else None
    if _depth(raw, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"JSON nested deeper than {MAX_JSON_DEPTH}", message_id=message_id)
    try:
        return _client_frame.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "frame"
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}: {first['msg']}", message_id=message_id) from None


# -- server -> client ---------------------------------------------------------------------------


class TopicPosition(BaseModel):
    epoch: str
    seq: int
    recovered: bool | None = None


class SubscribedAck(BaseModel):
    type: Literal["subscribed"] = "subscribed"
    message_id: str | None = None
    topics: list[str]
    positions: dict[str, TopicPosition] = Field(default_factory=dict)


class UnsubscribedAck(BaseModel):
    type: Literal["unsubscribed"] = "unsubscribed"
    message_id: str | None = None
    topics: list[str]


class Pong(BaseModel):
    type: Literal["pong"] = "pong"
    message_id: str | None = None


class ServerPing(BaseModel):
    type: Literal["ping"] = "ping"
    ts: int


class ErrorFrame(BaseModel):
    type: Literal["error"] = "error"
    code: ErrorCode
    topic: str | None = None
    message_id: str | None = None
    message: str


def error_frame(error: ProtocolError, *, topic: str | None = None) -> str:
    frame = ErrorFrame(code=error.code, topic=topic, message_id=error.message_id, message=error.message)
    return frame.model_dump_json()
