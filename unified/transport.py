"""The direct-write seam between a socket's outbox and the server that owns the socket.

ASGI gives an application one way to write: `await send({"type": "websocket.send", ...})`, which
walks the middleware chain and frames the message for each socket. For a fan-out that cost is paid
per recipient. A server that can do better offers the socket's transport through an ASGI scope
extension under `DIRECT_TRANSPORT_EXTENSION`; the outbox then writes finished frames
(`unified.wire`) straight to it, and falls back to ASGI `send` where the extension is absent (other
servers, test clients). `bridge.ws_protocol` is the uvicorn implementation.

Only data frames go this way. The handshake and the close still go through ASGI `send`, so the
server's own state machine stays in charge of the connection's lifecycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

DIRECT_TRANSPORT_EXTENSION = "wsmigrate.direct_transport"
WRITTEN, PAUSED, CLOSED = 0, 1, 2  # what `DirectTransport.write_frames` did


@runtime_checkable
class DirectTransport(Protocol):
    """Write finished WebSocket frames to one open connection."""

    def write_frames(self, data: bytes) -> int:
        """Write `data` (whole frames) now, if the connection takes it. Returns `WRITTEN`, `PAUSED`
        (the transport's buffer is above its high-water mark: nothing written, wait and retry) or
        `CLOSED` (closing, closed, or the close handshake started: nothing written, ever again).
        One call answers both questions because it runs once per socket per loop turn."""

    async def wait_writable(self) -> None:
        """Return once the transport is below its low-water mark again, or the connection is gone."""


def direct_transport(scope: Mapping[str, Any]) -> DirectTransport | None:
    """The direct transport a server put in a WebSocket scope, if any."""
    extensions = scope.get("extensions") or {}
    candidate = extensions.get(DIRECT_TRANSPORT_EXTENSION)
    return candidate if isinstance(candidate, DirectTransport) else None
