"""Base layer: every Prometheus metric of wsmigrate and the root of its exception hierarchy.

`metrics` imports nothing else of the project, so `legacy`, `unified` and `bridge` can all depend on
it without creating cycles. No other package constructs a Counter, Gauge or Histogram.
"""

from wsmigrate.metrics.errors import WsMigrateError
from wsmigrate.metrics.ledger import DeliveryTicket, PathLedger
from wsmigrate.metrics.registry import (
    BRIDGE_OUTCOMES,
    COMPARISON_OUTCOMES,
    COMPLETION_OUTCOMES,
    DELIVERY_OUTCOMES,
    ORIGINS,
    PATHS,
    SKIP_REASONS,
    STAGES,
    UNIFIED_KIND,
    WsMetrics,
)

__all__ = [
    "BRIDGE_OUTCOMES",
    "COMPARISON_OUTCOMES",
    "COMPLETION_OUTCOMES",
    "DELIVERY_OUTCOMES",
    "ORIGINS",
    "PATHS",
    "SKIP_REASONS",
    "STAGES",
    "UNIFIED_KIND",
    "DeliveryTicket",
    "PathLedger",
    "WsMetrics",
    "WsMigrateError",
]
