"""Tokens never reach the logs: a logging filter that redacts them from request lines.

Browsers cannot set headers on a WebSocket, so its token travels as `?token=` in the URL, and some
REST clients do the same. Servers log request lines: uvicorn's access log (`uvicorn.access`) and
its WebSocket handshake lines (`uvicorn.error`, "WebSocket /api/ws?token=…" [accepted]), gunicorn's
access log (`gunicorn.access`). `install_redaction()` (called when wsmigrate is installed into an
app) adds `TokenRedactingFilter` to those loggers, so every such line says `token=[redacted]`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
REQUEST_LOGGERS = ("uvicorn.access", "uvicorn.error", "gunicorn.access", "gunicorn.error")
# Query parameters that carry a credential (wsmigrate's own and the common spellings).
_SECRET = re.compile(r"(?i)((?:^|[?&;])(?:token|wsmigrate_token|access_token|auth|api_key)=)[^&;\s\"']*")


def redact(text: str) -> str:
    """`text` with every credential query parameter's value replaced by `[redacted]`."""
    return _SECRET.sub(lambda m: m.group(1) + REDACTED, text) if "=" in text else text


def _scrub(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class TokenRedactingFilter(logging.Filter):
    """Redacts credentials from a record's message and arguments (tuple or mapping); never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_scrub(arg) for arg in args)
        elif isinstance(args, dict):
            record.args = {key: _scrub(value) for key, value in args.items()}
        return True


def install_redaction() -> None:
    """Add the filter to the servers' request loggers (once)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactingFilter) for f in logger.filters):
            logger.addFilter(TokenRedactingFilter())
