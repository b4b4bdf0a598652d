"""Errors raised by the unified path, all rooted in `WsMigrateError`."""

from wsmigrate.metrics.errors import WsMigrateError


class UnifiedError(WsMigrateError):
    """Base class of the unified path's errors."""


class InvalidTopicError(UnifiedError):
    """A topic string does not match the topic grammar."""


class BusClosedError(UnifiedError):
    """A publish was attempted on a bus that is not running."""


class RoutingError(UnifiedError):
    """An event's data lacks the fields its topic rule needs."""


class BusUnavailableError(UnifiedError):
    """The bus cannot be reached, or this worker's reader is too far behind to answer consistently."""


class UnknownEventTypeError(RoutingError):
    """An event type that the application's catalogue does not declare."""
