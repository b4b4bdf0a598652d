"""The transactional half of `@publish_event(session=...)`, and `stage_event`.

Why a module of its own: it is the only part of the decorator that needs SQLAlchemy, and
`wsmigrate.unified.decorator` imports it on first use, so an application that never gives a
session (no transactional outbox) never loads SQLAlchemy for wsmigrate (~26 MiB per process,
`tests/process/test_imports_on_demand.py`). See `wsmigrate.unified.decorator` for what the
decorator does and `wsmigrate.unified.transactional_outbox` for the outbox.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast

from sqlalchemy.orm import Session

from wsmigrate.unified.bus import EventBus
from wsmigrate.unified.catalog import EventName
from wsmigrate.unified.decorator import current_outbox, resolve_bus
from wsmigrate.unified.events import Event
from wsmigrate.unified.transactional_outbox import COMMITS, OutboxError, TransactionalOutbox, watch

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)
_warned: set[str] = set()


def resolve_outbox(outbox: TransactionalOutbox | None) -> TransactionalOutbox:
    """`outbox`, else the request's `current_outbox`."""
    resolved = outbox or current_outbox.get()
    if resolved is None:
        raise OutboxError("@publish_event(session=...) needs a transactional outbox: pass outbox=, or give "
                          "WsMigrate(..., outbox=TransactionalOutbox(engine))")
    return resolved


def stage_event(
    session: Session,
    event_type: EventName,
    data: Mapping[str, Any],
    *,
    bus: EventBus | None = None,
    outbox: TransactionalOutbox | None = None,
) -> Event:
    """Announce `data` as `event_type` with `session`'s next commit (the transactional outbox), for
    code that is not one decorated route: a second event of a route, a service method. Returns
    the staged event; it is published once the session commits, never if it rolls back."""
    event = resolve_bus(bus).new_event(event_type, data)
    resolve_outbox(outbox).stage(session, event)
    return event


class TransactionalCall:
    """The outbox half of one decorated function: find the session, check the route left the
    commit to us, stage the event and commit."""

    def __init__(self, func: Callable[..., Any], param: str, outbox: TransactionalOutbox | None) -> None:
        self.name = f"{func.__module__}.{func.__qualname__}"
        self.signature = inspect.signature(func)
        if param not in self.signature.parameters:
            raise TypeError(f"{self.name} has no parameter {param!r} (the session= of @publish_event)")
        self.param = param
        self.outbox = outbox

    def session_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Session:
        session = self.signature.bind_partial(*args, **kwargs).arguments.get(self.param)
        if not isinstance(session, Session):
            raise OutboxError(f"{self.name}: {self.param!r} is not a SQLAlchemy Session ({type(session).__name__})")
        watch(session)
        return session

    def commit(self, session: Session, commits_before: int, event: Event) -> TransactionalOutbox:
        outbox = resolve_outbox(self.outbox)
        if session.info.get(COMMITS, 0) != commits_before and self.name not in _warned:
            _warned.add(self.name)
            log.warning("%s committed before @publish_event could stage its %s event: the change and its "
                        "event are not atomic; flush() in the route and let the decorator commit",
                        self.name, event.type)
        outbox.stage(session, event)
        session.commit()
        return outbox


def transactional(func: Callable[P, R], event_type: EventName, *, bus: EventBus | None,
                  data: Callable[[Any], Mapping[str, Any]], session: str, outbox: TransactionalOutbox | None,
                  wait_s: float) -> Callable[P, R]:
    """`func` decorated by `@publish_event(event_type, session=session, ...)`."""
    tx = TransactionalCall(func, session, outbox)
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            db = tx.session_of(args, kwargs)
            commits = db.info.get(COMMITS, 0)
            result = await func(*args, **kwargs)
            event = resolve_bus(bus).new_event(event_type, data(result))
            await tx.commit(db, commits, event).published([event.event_id], wait_s)
            return result

        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(func)
    def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        db = tx.session_of(args, kwargs)
        commits = db.info.get(COMMITS, 0)
        result = func(*args, **kwargs)
        event = resolve_bus(bus).new_event(event_type, data(result))
        tx.commit(db, commits, event).published_sync([event.event_id], wait_s)
        return result

    return sync_wrapper
