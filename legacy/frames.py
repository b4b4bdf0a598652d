"""The legacy wire format: JSON text frames with a `type`, as old applications sent and accepted them.

The shapes of an application's own frames are its business (its frame builders, its translation
table); this module holds what every legacy protocol served by wsmigrate shares: encoding, the
guards on what a client may send (size, JSON nesting), and the default error frame
(`{"type": "error", "message_id", "error", "details"}`), which an application may replace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from wsmigrate.legacy.errors import LegacyProtocolError

MAX_FRAME_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32

Frame = dict[str, Any]


def encode(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def default_error_frame(text: str, message_id: Any = None, details: Any = None) -> Frame:
    return {"type": "error", "message_id": message_id, "error": text, "details": details}


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


def parse_json_frame(text: str) -> Any:
    """The JSON value of a client frame within the size and depth bounds (`LegacyProtocolError`
    carries the error frame's text otherwise)."""
    if len(text.encode("utf-8")) > MAX_FRAME_BYTES:
        raise LegacyProtocolError(f"Frame larger than {MAX_FRAME_BYTES} bytes")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise LegacyProtocolError("Invalid JSON") from None
    if _too_deep(raw, MAX_JSON_DEPTH):
        message_id = raw.get("message_id") if isinstance(raw, dict) else None
        raise LegacyProtocolError(f"JSON nested deeper than {MAX_JSON_DEPTH}", message_id=message_id)
    return raw
