"""The chat app's legacy wire format: its flat JSON frames, exactly as the old app sent and accepted them.

Server-to-client frames are built by the functions below (the old code built dicts inline at every
call site; the builders keep their shapes in one place without changing them). Client-to-server
frames are the app's legacy commands, validated with pydantic models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wsmigrate import Frame

# -- server -> client ---------------------------------------------------------------------------


def thread_history(thread_id: int, messages: Sequence[Mapping[str, Any]]) -> Frame:
    return {"type": "thread_history", "thread_id": thread_id, "messages": [dict(m) for m in messages]}


def thread_message(message: Mapping[str, Any]) -> Frame:
    return {"type": "thread_message", "thread_id": message["thread_id"], "message": dict(message)}


def _run(run_id: str | None, index: int | None = None) -> Frame:
    """Fields the frames of a run gained so a view loaded mid-run knows which chunks it already holds."""
    fields: Frame = {} if run_id is None else {"run_id": run_id}
    if index is not None:
        fields["index"] = index
    return fields


def stream_start(thread_id: int, run_id: str | None = None) -> Frame:
    return {"type": "stream_start", "thread_id": thread_id, **_run(run_id)}


def stream_chunk(thread_id: int, content: str, run_id: str | None = None, index: int | None = None) -> Frame:
    return {"type": "stream_chunk", "thread_id": thread_id, "content": content, **_run(run_id, index)}


def stream_end(thread_id: int, run_id: str | None = None) -> Frame:
    return {"type": "stream_end", "thread_id": thread_id, **_run(run_id)}


def stream_error(thread_id: int, error: str) -> Frame:
    return {"type": "stream_error", "thread_id": thread_id, "error": error}


def flat(frame_type: str, fields: Mapping[str, Any]) -> Frame:
    """Agent and thread frames: the object's fields flattened next to `type`."""
    return {"type": frame_type, **fields}


def pong(timestamp: Any) -> Frame:
    return {"type": "pong", "timestamp": timestamp}


# -- client -> server ---------------------------------------------------------------------------


class _ClientFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the old server ignored unknown fields
    message_id: str | int | None = None


class SubscribeThread(_ClientFrame):
    type: Literal["subscribe_thread"]
    thread_id: int = Field(ge=1, le=2**63 - 1)


class SendMessage(_ClientFrame):
    type: Literal["send_message"]
    thread_id: int = Field(ge=1, le=2**63 - 1)
    content: str = Field(min_length=1, max_length=100_000)


class Ping(_ClientFrame):
    type: Literal["ping"]
    timestamp: int | float | str | None = None
