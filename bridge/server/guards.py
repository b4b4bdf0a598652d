"""Connection-level guards of both socket paths: who is asking, from which origin, how many sockets.

Authentication is the application's: wsmigrate calls its `authenticate(connection)` hook, which
returns a user id or None. A token is read, by convention, from `Authorization: Bearer …`, the
`wsmigrate_token` cookie, or, for WebSockets only (browsers cannot set headers there), a `token`
query parameter (`token_of`). With `WSMIGRATE_AUTH=off` nobody is authenticated and nothing is
owned: that mode is for local development and tests, and the server logs a warning at start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

TOKEN_COOKIE = "wsmigrate_token"
Authenticate = Callable[[HTTPConnection], Awaitable[str | None]]


def token_of(connection: HTTPConnection, *, allow_query: bool) -> str | None:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    cookie = connection.cookies.get(TOKEN_COOKIE)
    if cookie:
        return cookie
    if allow_query:
        return connection.query_params.get("token") or None
    return None


class OriginPolicy:
    """Cross-site WebSocket hijacking guard: a browser's `Origin` must be on the allowlist.

    Clients that are not browsers send no `Origin` and are judged by their token alone.
    """

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = {o.rstrip("/").lower() for o in allowed if o}

    @classmethod
    def for_server(cls, configured: str, self_url: str) -> OriginPolicy:
        if configured.strip():
            return cls({o.strip() for o in configured.split(",")})
        allowed: set[str] = set()
        if self_url:
            parts = urlsplit(self_url)
            allowed.add(f"{parts.scheme}://{parts.netloc}")
            if parts.hostname in ("127.0.0.1", "localhost"):
                port = f":{parts.port}" if parts.port else ""
                allowed |= {f"{parts.scheme}://127.0.0.1{port}", f"{parts.scheme}://localhost{port}"}
        return cls(allowed)

    def allows(self, origin: str | None) -> bool:
        return origin is None or origin.rstrip("/").lower() in self.allowed


class ConnectionQuota:
    """At most `limit` open sockets (both protocols) per user."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, user_id: str | None) -> bool:
        if user_id is None:
            return True
        count = self._open.get(user_id, 0)
        if count >= self.limit:
            return False
        self._open[user_id] = count + 1
        return True

    def release(self, user_id: str | None) -> None:
        if user_id is None:
            return
        count = self._open.get(user_id, 0) - 1
        if count > 0:
            self._open[user_id] = count
        else:
            self._open.pop(user_id, None)
