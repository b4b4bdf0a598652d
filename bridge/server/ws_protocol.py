"""uvicorn's WebSocket protocol with a direct transport for outboxes (see `unified.transport`).

`wsmigrate serve` runs uvicorn with `ws=DIRECT_WS_PROTOCOL`. Each accepted socket's ASGI scope then
carries the protocol itself under `DIRECT_TRANSPORT_EXTENSION`, and the socket's outbox writes
finished frames to the transport instead of walking the ASGI send chain once per recipient. The
handshake, client frames, pings, the close handshake and flow control stay uvicorn's: this class
only adds three small methods and the scope entry.

Frames written this way are never compressed. RFC 7692 lets a sender leave any message
uncompressed (RSV1 clear) even when permessage-deflate was negotiated, so this is correct with
every client; `wsmigrate serve` does not offer the extension at all, since compressing would have to
run once per socket and per frame, which is what the direct path exists to avoid.

To get the same fast path in your own uvicorn deployment: `uvicorn.run(app, ws=DIRECT_WS_PROTOCOL)`.
Under any other server the outboxes fall back to ASGI `send` and behave the same, only slower.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from wsmigrate.bridge.server.http_protocol import HEAD_TIMEOUT_HTTP_PROTOCOL
from wsmigrate.unified.transport import CLOSED, DIRECT_TRANSPORT_EXTENSION, PAUSED, WRITTEN

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

DIRECT_WS_PROTOCOL = "wsmigrate.bridge.server.ws_protocol:DirectWebSocketProtocol"
WS_MAX_SIZE = 1024 * 1024  # protocol-level cap; the application rejects frames over 64 KiB itself
# The uvicorn options every wsmigrate server runs with (serve, the benchmark, the test servers):
# the direct-transport WebSocket protocol (this module), without permessage-deflate.
UVICORN_WS_OPTIONS: dict[str, object] = {
    "http": HEAD_TIMEOUT_HTTP_PROTOCOL,  # request heads must arrive within a bound (slowloris)
    "ws": DIRECT_WS_PROTOCOL,
    "ws_per_message_deflate": False,
    "ws_max_size": WS_MAX_SIZE,
}


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """A `unified.transport.DirectTransport` over uvicorn's sans-I/O websockets protocol.

    `write_frames` runs once per socket and loop turn of every fan-out, so it reads plain
    attributes only (and the transport's `is_closing`): `paused` mirrors uvicorn's `writable` event,
    kept by the flow-control callbacks below, instead of asking the event each time.
    """

    paused = False
    app_returned = False

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.handshake_initiated and self.response.status_code == 101:
            self.scope["extensions"][DIRECT_TRANSPORT_EXTENSION] = self  # type: ignore[assignment]
        # The handshake request outlives the handshake (uvicorn keeps it, and so does the websockets
        # parser generator, whose frame holds it as a local for the socket's lifetime) though
        # nothing reads it again: the scope has its own copy of the headers. Emptying its headers
        # frees ~3 KiB of parsed strings per socket.
        event.headers.clear()
        self.request = None  # type: ignore[assignment]

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.handshake_complete and self.response is not None:
            # the handshake response is only read until it is sent (uvicorn's `send` on accept)
            self.response = None  # type: ignore[assignment]

    def pause_writing(self) -> None:
        self.paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        self.paused = False
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.paused = False  # as uvicorn sets `writable`: nothing waits for a lost connection
        super().connection_lost(exc)
        if self.app_returned:
            self._release()

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        super().on_task_complete(task)  # the protocol's one ASGI task (uvicorn's `tasks` is the server's)
        self.app_returned = True
        if self.disconnected:
            self._release()

    def _release(self) -> None:
        """Break the reference cycles a finished socket leaves, so reference counting frees it.

        Once the transport is gone and the application returned, nothing reads this protocol's
        state again. Left alone, two cycles keep every object of the socket (its scope, the
        handshake, the ASGI app's request objects: ~75 of them) alive until the collector's next
        full pass: this protocol in its own scope's extensions, and the websockets protocol's
        parser generator, which holds that protocol. Fewer objects for the collector to find
        means shorter and rarer full collections (bridge/server/gc_policy.py).
        """
        self.scope.get("extensions", {}).pop(DIRECT_TRANSPORT_EXTENSION, None)
        self.conn.parser.close()

    def write_frames(self, data: bytes) -> int:
        if self.close_sent or self.disconnected or not self.handshake_complete or self.transport.is_closing():
            return CLOSED
        if self.paused:
            return PAUSED
        self.transport.write(data)
        return WRITTEN

    async def wait_writable(self) -> None:
        await self.writable.wait()
