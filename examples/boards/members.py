"""The boards app's members and their tokens (its own auth, configured by the same `WSMIGRATE_*`
settings as the chat example: `WSMIGRATE_AUTH=off` trusts everyone, `WSMIGRATE_DEMO_TOKEN`
creates a demo member)."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from examples.boards.db import Database, Member
from wsmigrate import token_of


class Members:
    def __init__(self, db: Database, *, enabled: bool) -> None:
        self.db = db
        self.enabled = enabled

    def _lookup(self, token: str) -> str | None:
        with self.db.session() as session:
            return session.scalars(select(Member.id).where(Member.token == token)).first()

    async def member_id(self, connection: HTTPConnection, *, allow_query: bool = True) -> str | None:
        """The member a request or socket belongs to (wsmigrate's `authenticate` hook), or None."""
        token = token_of(connection, allow_query=allow_query)
        return None if token is None else await run_in_threadpool(self._lookup, token)

    def ensure(self, name: str, token: str | None = None) -> tuple[str, str]:
        """(member id, token) of member `name`, created if missing."""
        try:
            return self._ensure(name, token)
        except IntegrityError:  # a worker starting at the same moment created it
            return self._ensure(name, token)

    def _ensure(self, name: str, token: str | None) -> tuple[str, str]:
        with self.db.session() as session:
            member = session.scalars(select(Member).where(Member.name == name)).first()
            if member is None:
                member = Member(name=name, token=token or secrets.token_urlsafe(24))
                session.add(member)
            elif token and member.token != token:
                member.token = token
            session.commit()
            return member.id, member.token
