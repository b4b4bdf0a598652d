"""Users, tokens, ownership and the connection-level guards (origin, per-user connection quota).

A request or socket authenticates with a bearer token (`Authorization: Bearer …`), the
`wsmigrate_token` cookie, or, for WebSockets only (browsers cannot set headers there), a `token`
query parameter. With `WSMIGRATE_AUTH=off` nobody is authenticated and nothing is owned: that mode
is for local development and tests, and the server logs a warning at start.

Ownership: users own agents, agents own threads. Every check answers `ok`, `not_found` or
`forbidden` (`Access`); `bridge.ownership` answers it for the unified topic gate, the legacy sockets
and the REST routes alike, so all of them enforce the same rule.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from wsmigrate.bridge.db import Database, User

TOKEN_COOKIE = "wsmigrate_token"
Access = Literal["ok", "not_found", "forbidden"]
_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str


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


class Authenticator:
    """Resolves tokens to users (cached: tokens do not change owner)."""

    def __init__(self, db: Database, *, enabled: bool) -> None:
        self.db = db
        self.enabled = enabled
        self._cache: OrderedDict[str, Principal] = OrderedDict()

    def _lookup(self, token: str) -> Principal | None:
        with self.db.session() as session:
            user = session.scalars(select(User).where(User.token == token)).first()
            return None if user is None else Principal(str(user.id), user.name)

    async def principal(self, token: str | None) -> Principal | None:
        if token is None:
            return None
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        found = await run_in_threadpool(self._lookup, token)
        if found is not None:
            self._cache[token] = found
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return found

    async def authenticate(self, connection: HTTPConnection, *, allow_query: bool) -> Principal | None:
        return await self.principal(token_of(connection, allow_query=allow_query))

    def ensure_user(self, name: str, token: str | None = None) -> tuple[Principal, str]:
        """Create (or update the token of) user `name`; returns it and its token.

        Workers starting together may both try to create the user: the loser of that race reads
        the winner's row instead.
        """
        try:
            return self._ensure_user(name, token)
        except IntegrityError:
            return self._ensure_user(name, token)

    def _ensure_user(self, name: str, token: str | None) -> tuple[Principal, str]:
        with self.db.session() as session:
            user = session.scalars(select(User).where(User.name == name)).first()
            if user is None:
                user = User(name=name, token=token or secrets.token_urlsafe(24))
                session.add(user)
            elif token and user.token != token:
                user.token = token
            session.commit()
            self._cache.clear()
            return Principal(str(user.id), user.name), user.token


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
