"""Errors of the legacy path, rooted in `WsMigrateError`."""

from __future__ import annotations

from typing import Any

from wsmigrate.metrics.errors import WsMigrateError


class LegacyError(WsMigrateError):
    """Base class of the legacy path's errors."""


class LegacyProtocolError(LegacyError):
    """A legacy client frame that cannot be served; answered with a legacy `error` frame."""

    def __init__(self, text: str, *, message_id: Any = None, details: Any = None) -> None:
        super().__init__(text)
        self.text = text
        self.message_id = message_id if isinstance(message_id, str | int) else None
        self.details = details
