"""The chat example's token cache: a revoked or rotated token stops working within its TTL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from examples.chat.db import Database, User
from examples.chat.users import Authenticator
from tests.support import FakeClock


async def test_a_revoked_token_works_until_the_ttl_then_never_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/users.db")
    db.create_all()
    clock = FakeClock()
    users = Authenticator(db, enabled=True, ttl_s=30, clock=clock)
    principal, token = users.ensure_user("ada")
    assert await users.principal(token) == principal

    with db.session() as session:  # rotated in the database, by another worker or an operator
        session.scalars(select(User).where(User.name == "ada")).one().token = "rotated"
        session.commit()
    clock.now += 29
    assert await users.principal(token) == principal  # still cached: within the documented bound
    clock.now += 2
    assert await users.principal(token) is None  # expired: re-read, and gone
    assert await users.principal("rotated") == principal
    db.dispose()
