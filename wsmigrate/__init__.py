"""wsmigrate: move a live web app from per-view WebSockets to one socket per client, type by type.

The four layers ship as subpackages of this namespace (`wsmigrate.metrics`, `wsmigrate.unified`,
`wsmigrate.legacy`, `wsmigrate.bridge`), so an application with its own `metrics.py`, `legacy/` or
`bridge/` can install wsmigrate beside them. What an application imports is re-exported here and
listed in `__all__`: that is the public API, and `tests/test_public_api.py` pins it.
"""

from wsmigrate.metrics import WsMigrateError
from wsmigrate.unified import (
    BusBackend,
    Connection,
    ConnectionManager,
    Event,
    EventBus,
    MemoryBackend,
    Position,
    Publication,
    current_bus,
    publish_event,
)

__version__ = "0.2.0"

__all__ = [
    "BusBackend",
    "Connection",
    "ConnectionManager",
    "Event",
    "EventBus",
    "MemoryBackend",
    "Position",
    "Publication",
    "WsMigrateError",
    "__version__",
    "current_bus",
    "publish_event",
]
