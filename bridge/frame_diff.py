"""Which fields of two JSON frames differ (pure): what a mismatch sample shows an operator.

`differences(legacy, unified)` walks both values and lists every leaf that is missing on one side
or different, as `{"path": "reply.body", "legacy": ..., "unified": ...}` (a side lacking the field
says `"<missing>"`). Bounded: at most `limit` entries, so a frame of any size gives a readable sample.
"""

from __future__ import annotations

import json
from typing import Any

MISSING = "<missing>"
DEFAULT_LIMIT = 20
PAYLOAD_SAMPLE_CHARS = 2000  # how much of each frame a sample keeps


def canonical(text: str) -> str:
    """`text` as sorted, compact JSON (the same frame always gives the same string); unparsable
    text is returned as it is."""
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return text


def differences(legacy: Any, unified: Any, *, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Every differing leaf of two decoded JSON values, by dotted path (`[i]` for list items)."""
    found: list[dict[str, Any]] = []
    _walk(legacy, unified, "", found, limit)
    return found


def text_differences(legacy: str, unified: str, *, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """`differences` of two JSON texts; a side that is not JSON is compared as a whole."""
    try:
        return differences(json.loads(legacy), json.loads(unified), limit=limit)
    except ValueError:
        return [] if legacy == unified else [{"path": "", "legacy": legacy, "unified": unified}]


def _walk(a: Any, b: Any, path: str, found: list[dict[str, Any]], limit: int) -> None:
    if len(found) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            child = f"{path}.{key}" if path else str(key)
            _walk(a.get(key, MISSING), b.get(key, MISSING), child, found, limit)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{index}]", found, limit)
        return
    if a != b or type(a) is not type(b):
        found.append({"path": path, "legacy": a, "unified": b})
