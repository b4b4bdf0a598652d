"""wsmigrate: move a live web app from per-view WebSockets to one socket per client, type by type.

The four layers ship as subpackages of this namespace (`wsmigrate.metrics`, `wsmigrate.unified`,
`wsmigrate.legacy`, `wsmigrate.bridge`), so an application with its own `metrics.py`, `legacy/` or
`bridge/` can install wsmigrate beside them. What an application imports is re-exported here and
listed in `__all__`: that is the public API (docs/migration-guide.md shows it in use), and
`tests/test_public_api.py` pins it. Names are resolved on first use, so importing one layer does
not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # declaring events and topics
    "EventCatalog": "wsmigrate.unified.catalog",
    "EventSpec": "wsmigrate.unified.catalog",
    "Event": "wsmigrate.unified.events",
    "Topic": "wsmigrate.unified.topics",
    "TopicPattern": "wsmigrate.unified.topics",
    "Verdict": "wsmigrate.unified.endpoint",
    "allow_all": "wsmigrate.unified.endpoint",
    # publishing
    "EventBus": "wsmigrate.unified.bus",
    "Publication": "wsmigrate.unified.publication",
    "Position": "wsmigrate.unified.publication",
    "publish_event": "wsmigrate.unified.decorator",
    "current_bus": "wsmigrate.unified.decorator",
    # committed changes announced exactly once (docs/migration-guide.md, the transactional outbox)
    "TransactionalOutbox": "wsmigrate.unified.transactional_outbox",
    "OutboxError": "wsmigrate.unified.transactional_outbox",
    "stage_event": "wsmigrate.unified.decorator_outbox",
    "current_outbox": "wsmigrate.unified.decorator",
    # REST snapshots a view follows live without a gap (docs/protocol.md, "Snapshots")
    "StreamPosition": "wsmigrate.unified.events",
    "Positions": "wsmigrate.unified.snapshot",
    "POSITIONS_HEADER": "wsmigrate.unified.snapshot",
    "read_positions": "wsmigrate.unified.snapshot",
    "rest_positions": "wsmigrate.unified.snapshot",
    "topic_positions": "wsmigrate.unified.snapshot",
    "positions_header": "wsmigrate.unified.snapshot",
    # the legacy side
    "LegacyView": "wsmigrate.legacy.views",
    "LegacyCommand": "wsmigrate.legacy.views",
    "LegacyProtocol": "wsmigrate.legacy.views",
    "Access": "wsmigrate.legacy.views",
    "TargetId": "wsmigrate.legacy.views",
    "LegacyContext": "wsmigrate.legacy.endpoint",
    "LegacyConnectionManager": "wsmigrate.legacy.manager",
    "LegacyProtocolError": "wsmigrate.legacy.errors",
    "Frame": "wsmigrate.legacy.frames",
    "TranslationTable": "wsmigrate.bridge.translation",
    "flat": "wsmigrate.bridge.translation",
    "nested": "wsmigrate.bridge.translation",
    "legacy_only": "wsmigrate.bridge.translation",
    # mounting into an app
    "Declaration": "wsmigrate.bridge.server.runtime",
    "WsMigrate": "wsmigrate.bridge.server.mount",
    "Settings": "wsmigrate.bridge.server.settings",
    "EnvSettings": "wsmigrate.bridge.server.settings",
    "token_of": "wsmigrate.bridge.server.guards",
    "UVICORN_WS_OPTIONS": "wsmigrate.bridge.server.ws_protocol",
    "Scenario": "wsmigrate.bridge.ops.simulate",
    # errors
    "WsMigrateError": "wsmigrate.metrics.errors",
    "SettingsError": "wsmigrate.bridge.errors",
}

__all__ = [
    "POSITIONS_HEADER",
    "UVICORN_WS_OPTIONS",
    "Access",
    "Declaration",
    "EnvSettings",
    "Event",
    "EventBus",
    "EventCatalog",
    "EventSpec",
    "Frame",
    "LegacyCommand",
    "LegacyConnectionManager",
    "LegacyContext",
    "LegacyProtocol",
    "LegacyProtocolError",
    "LegacyView",
    "OutboxError",
    "Position",
    "Positions",
    "Publication",
    "Scenario",
    "Settings",
    "SettingsError",
    "StreamPosition",
    "TargetId",
    "Topic",
    "TopicPattern",
    "TransactionalOutbox",
    "TranslationTable",
    "Verdict",
    "WsMigrate",
    "WsMigrateError",
    "__version__",
    "allow_all",
    "current_bus",
    "current_outbox",
    "flat",
    "legacy_only",
    "nested",
    "positions_header",
    "publish_event",
    "read_positions",
    "rest_positions",
    "stage_event",
    "token_of",
    "topic_positions",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wsmigrate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from wsmigrate.bridge.errors import SettingsError
    from wsmigrate.bridge.ops.simulate import Scenario
    from wsmigrate.bridge.server.guards import token_of
    from wsmigrate.bridge.server.mount import WsMigrate
    from wsmigrate.bridge.server.runtime import Declaration
    from wsmigrate.bridge.server.settings import EnvSettings, Settings
    from wsmigrate.bridge.server.ws_protocol import UVICORN_WS_OPTIONS
    from wsmigrate.bridge.translation import TranslationTable, flat, legacy_only, nested
    from wsmigrate.legacy.endpoint import LegacyContext
    from wsmigrate.legacy.errors import LegacyProtocolError
    from wsmigrate.legacy.frames import Frame
    from wsmigrate.legacy.manager import LegacyConnectionManager
    from wsmigrate.legacy.views import Access, LegacyCommand, LegacyProtocol, LegacyView, TargetId
    from wsmigrate.metrics.errors import WsMigrateError
    from wsmigrate.unified.bus import EventBus
    from wsmigrate.unified.catalog import EventCatalog, EventSpec
    from wsmigrate.unified.decorator import current_bus, publish_event
    from wsmigrate.unified.endpoint import Verdict, allow_all
    from wsmigrate.unified.events import Event, StreamPosition
    from wsmigrate.unified.publication import Position, Publication
    from wsmigrate.unified.snapshot import (
        POSITIONS_HEADER,
        Positions,
        positions_header,
        read_positions,
        rest_positions,
        topic_positions,
    )
    from wsmigrate.unified.topics import Topic, TopicPattern
