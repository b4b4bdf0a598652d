"""The unified delivery path: one `/api/ws` socket per client, topics, and an internal event bus.

`unified` never imports `legacy` or `bridge`; it may import `metrics`.
"""

from wsmigrate.unified.backend import BusBackend, MemoryBackend
from wsmigrate.unified.bus import EventBus
from wsmigrate.unified.catalog import EventCatalog, EventSpec
from wsmigrate.unified.decorator import current_bus, publish_event
from wsmigrate.unified.events import Event
from wsmigrate.unified.manager import Connection, ConnectionManager
from wsmigrate.unified.publication import Position, Publication

__all__ = [
    "BusBackend",
    "Connection",
    "ConnectionManager",
    "Event",
    "EventBus",
    "EventCatalog",
    "EventSpec",
    "MemoryBackend",
    "Position",
    "Publication",
    "current_bus",
    "publish_event",
]
