"""Errors of the bridge and the reference server, rooted in `WsMigrateError`."""

from wsmigrate.metrics.errors import WsMigrateError


class BridgeError(WsMigrateError):
    """Base class of the bridge's errors."""


class FlagsError(BridgeError):
    """A flags document or a flag change was rejected; the last good flags stay in force."""


class TranslationError(BridgeError):
    """A legacy frame or an event could not be translated between the two shapes."""


class SettingsError(BridgeError, ValueError):
    """A `WSMIGRATE_*` setting that cannot be used; the message names each variable and its value."""
