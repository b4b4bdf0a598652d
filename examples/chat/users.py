"""The chat app's users and their tokens: its `authenticate` hook for wsmigrate, and REST's.

A request or socket authenticates with a bearer token (`Authorization: Bearer …`), the
`wsmigrate_token` cookie, or, for WebSockets only (browsers cannot set headers there), a `token`
query parameter (`wsmigrate.token_of` reads them). With `WSMIGRATE_AUTH=off` nobody is
authenticated and nothing is owned.

Ownership: users own agents, agents own threads. Every check answers `ok`, `not_found` or
`forbidden`; `examples.chat.ownership` answers it for the unified topics, the legacy sockets and
the REST routes alike, so all of them enforce the same rule.

Tokens are cached for `TOKEN_CACHE_TTL_S` (30 s): a token revoked or rotated in the database stops
working for new requests and sockets within that time, on every worker (each re-reads it). An
open socket keeps the session it authenticated until it closes.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from examples.chat.db import Database, User
from wsmigrate import token_of

_CACHE_SIZE = 10_000
TOKEN_CACHE_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str


class Authenticator:
    """Resolves tokens to users (cached for `ttl_s`: a revoked token stops working within it)."""

    def __init__(self, db: Database, *, enabled: bool, ttl_s: float = TOKEN_CACHE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.enabled = enabled
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()  # token -> (user, expires)

    def _lookup(self, token: str) -> Principal | None:
        with self.db.session() as session:
            user = session.scalars(select(User).where(User.token == token)).first()
            return None if user is None else Principal(str(user.id), user.name)

    async def principal(self, token: str | None) -> Principal | None:
        if token is None:
            return None
        cached = self._cache.get(token)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await run_in_threadpool(self._lookup, token)
        if found is None:
            self._cache.pop(token, None)
        else:
            self._cache[token] = (found, now + self.ttl_s)
            self._cache.move_to_end(token)
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return found

    async def authenticate(self, connection: HTTPConnection, *, allow_query: bool) -> Principal | None:
        return await self.principal(token_of(connection, allow_query=allow_query))

    async def user_id(self, connection: HTTPConnection) -> str | None:
        """wsmigrate's `authenticate` hook: the socket's user, or None (refused with 4401)."""
        principal = await self.authenticate(connection, allow_query=True)
        return None if principal is None else principal.user_id

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
