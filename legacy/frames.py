"""The legacy wire format: flat JSON frames, exactly as the old application sent and accepted them.

Server-to-client frames are built by the functions below (the old code built dicts inline at every
call site; the builders keep their shapes in one place without changing them). Client-to-server
frames are validated with pydantic models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from wsmigrate.legacy.errors import LegacyProtocolError

MAX_FRAME_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32

Frame = dict[str, Any]

# -- server -> client ---------------------------------------------------------------------------


def thread_history(thread_id: int, messages: Sequence[Mapping[str, Any]]) -> Frame:
    return {"type": "thread_history", "thread_id": thread_id, "messages": [dict(m) for m in messages]}


def thread_message(message: Mapping[str, Any]) -> Frame:
    return {"type": "thread_message", "thread_id": message["thread_id"], "message": dict(message)}


def stream_start(thread_id: int) -> Frame:
    return {"type": "stream_start", "thread_id": thread_id}


def stream_chunk(thread_id: int, content: str) -> Frame:
    return {"type": "stream_chunk", "thread_id": thread_id, "content": content}


def stream_end(thread_id: int) -> Frame:
    return {"type": "stream_end", "thread_id": thread_id}


def stream_error(thread_id: int, error: str) -> Frame:
    return {"type": "stream_error", "thread_id": thread_id, "error": error}


def flat(frame_type: str, fields: Mapping[str, Any]) -> Frame:
    """Agent and thread frames: the object's fields flattened next to `type`."""
    return {"type": frame_type, **fields}


def pong(timestamp: Any) -> Frame:
    return {"type": "pong", "timestamp": timestamp}


def error(text: str, *, message_id: Any = None, details: Any = None) -> Frame:
    return {"type": "error", "message_id": message_id, "error": text, "details": details}


def encode(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


# -- client -> server ---------------------------------------------------------------------------


class _ClientFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the old server ignored unknown fields
    message_id: str | int | None = None


class SubscribeThread(_ClientFrame):
    type: Literal["subscribe_thread"]
    thread_id: int


class SendMessage(_ClientFrame):
    type: Literal["send_message"]
    thread_id: int
    content: str = Field(min_length=1, max_length=100_000)


class Ping(_ClientFrame):
    type: Literal["ping"]
    timestamp: int | float | str | None = None


LegacyClientFrame = Annotated[SubscribeThread | SendMessage | Ping, Field(discriminator="type")]
_client_frame: TypeAdapter[LegacyClientFrame] = TypeAdapter(LegacyClientFrame)


def _too_deep(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def parse_client_frame(text: str) -> LegacyClientFrame:
    """Validate a legacy client frame; `LegacyProtocolError` carries the error frame's text."""
    if len(text.encode("utf-8")) > MAX_FRAME_BYTES:
        raise LegacyProtocolError(f"Frame larger than {MAX_FRAME_BYTES} bytes")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise LegacyProtocolError("Invalid JSON") from None
    message_id = raw.get("message_id") if isinstance(raw, dict) else None
    if _too_deep(raw, MAX_JSON_DEPTH):
        raise LegacyProtocolError(f"JSON nested deeper than {MAX_JSON_DEPTH}", message_id=message_id)
    try:
        return _client_frame.validate_python(raw)
    except ValidationError as exc:
        kind = raw.get("type") if isinstance(raw, dict) else None
        text_ = f"Unknown message type: {kind}" if isinstance(kind, str) else "Invalid message"
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        raise LegacyProtocolError(text_, message_id=message_id, details=details) from None
