"""gunicorn's worker class for wsmigrate apps: `gunicorn -k wsmigrate.bridge.server.gunicorn.WsMigrateWorker`.

uvicorn's own gunicorn worker (package `uvicorn-worker`) with wsmigrate's uvicorn options: the
direct-transport WebSocket protocol and no permessage-deflate (`wsmigrate.bridge.server.ws_protocol`), so sockets
get the fast outbox instead of the ASGI-send fallback. Needs the `gunicorn` extra
(`pip install 'wsmigrate[gunicorn]'`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from wsmigrate.bridge.server.ws_protocol import UVICORN_WS_OPTIONS


class WsMigrateWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no type information
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS, **UVICORN_WS_OPTIONS}
