"""Graceful shutdown: on SIGTERM, stop accepting, tell clients to reconnect in batches, then exit.

uvicorn's own shutdown closes every WebSocket at once, so thousands of clients would reconnect in
the same instant (to the next instance, or to this one as it restarts). We take SIGTERM first:
the app stops accepting sockets, closes the open ones with 1012 ("service restart": reconnect)
in batches with a pause between them, and then hands the signal back to uvicorn, which finishes
its normal shutdown. The whole drain is bounded by `shutdown_timeout_s`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsmigrate.bridge.server.runtime import Runtime

log = logging.getLogger(__name__)


def install_sigterm_drain(runtime: Runtime) -> bool:
    """Take over SIGTERM in this process's main thread; False where signals are not ours."""
    if threading.current_thread() is not threading.main_thread():
        return False
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def hand_back() -> None:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)

    async def drain_then_exit() -> None:
        try:
            await asyncio.wait_for(runtime.drain(), runtime.settings.shutdown_timeout_s)
        except TimeoutError:
            log.error("drain did not finish within %.1fs; exiting anyway", runtime.settings.shutdown_timeout_s)
        hand_back()

    def on_sigterm(signum: int, frame: FrameType | None) -> Any:
        log.info("SIGTERM: draining connections before shutdown")
        signal.signal(signal.SIGTERM, lambda *_: None)  # a second SIGTERM waits for the drain
        loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_exit()))

    signal.signal(signal.SIGTERM, on_sigterm)
    return True
