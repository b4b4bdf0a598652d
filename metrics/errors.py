"""The root of wsmigrate's single exception hierarchy.

It lives in the base layer because it is the one package every other package may import; each
layer derives its own errors from `WsMigrateError`, so callers can catch everything of ours at once.
"""


class WsMigrateError(Exception):
    """Base class of every error raised deliberately by wsmigrate."""
