"""uvicorn's HTTP protocol with a bound on the request head: slowloris sockets are closed and counted.

uvicorn waits for a request head as long as the client likes: a socket that sends `GET / HTTP/1.1`
and then one header byte a minute holds a connection slot forever, and a few hundred of them
starve the server. `HeadTimeoutH11Protocol` closes a connection whose first request head is not
complete within `HEAD_TIMEOUT.seconds` (`WSMIGRATE_REQUEST_HEAD_TIMEOUT_S`, default 10 s) and
reports each close to `HEAD_TIMEOUT.on_timeout`, which the runtime points at
`wsmigrate_http_head_timeouts_total` when it starts. A head that
completes (a request, or a WebSocket upgrade) cancels the timer; keep-alive requests after the
first are left to uvicorn's `timeout_keep_alive`.

`wsmigrate serve` and `UVICORN_WS_OPTIONS` use it (`http=HEAD_TIMEOUT_HTTP_PROTOCOL`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_HTTP_PROTOCOL = "wsmigrate.bridge.server.http_protocol:HeadTimeoutH11Protocol"
DEFAULT_HEAD_TIMEOUT_S = 10.0


@dataclass
class HeadTimeout:
    """Process-wide: uvicorn builds protocols from a class name, so they cannot be handed settings."""

    seconds: float = DEFAULT_HEAD_TIMEOUT_S
    on_timeout: Callable[[], None] | None = None


HEAD_TIMEOUT = HeadTimeout()


class HeadTimeoutH11Protocol(H11Protocol):
    """`H11Protocol` closing connections whose request head does not arrive in time (module docstring)."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT.seconds, self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None:  # a request head was parsed
            self._head_done()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._head_done()  # the socket is the WebSocket protocol's from here
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _head_done(self) -> None:
        timer, self._head_timer = self._head_timer, None
        if timer is not None:
            timer.cancel()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is not None or self.transport.is_closing():
            return
        if HEAD_TIMEOUT.on_timeout is not None:
            HEAD_TIMEOUT.on_timeout()
        self.transport.close()
