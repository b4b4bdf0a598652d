"""WebSocket frames encoded once and written to many sockets: pure byte layout, no I/O.

A server-to-client frame is never masked (RFC 6455 section 5.1), so the complete frame of a
message, header included, is the same bytes for every recipient that does not compress. Building
it once per event and topic turns a fan-out to N sockets into N `transport.write` calls of one
shared `bytes` object, with no per-recipient framing or encoding at all.
"""

from __future__ import annotations

import struct
from typing import Protocol

FIN_TEXT = 0x81  # FIN bit + opcode 0x1 (text)
_MEDIUM = struct.Struct("!BBH")
_LARGE = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """The whole unmasked, unfragmented text frame carrying `payload` (UTF-8 JSON)."""
    size = len(payload)
    if size < 126:
        return bytes((FIN_TEXT, size)) + payload
    if size < 1 << 16:
        return _MEDIUM.pack(FIN_TEXT, 126, size) + payload
    return _LARGE.pack(FIN_TEXT, 127, size) + payload


class Encoded(Protocol):
    """Anything carrying a message in both forms (`EncodedFrame`, or another layer's equivalent)."""

    @property
    def text(self) -> str: ...

    @property
    def wire(self) -> bytes: ...


class EncodedFrame:
    """One text message in both forms a socket may need: `text` for an ASGI `send`, and `wire`,
    the finished frame for a direct transport write. Built once, shared by every recipient."""

    __slots__ = ("text", "wire")

    def __init__(self, text: str) -> None:
        self.text = text
        self.wire = text_frame(text.encode())

    def __repr__(self) -> str:
        return f"EncodedFrame({self.text[:60]!r})"
