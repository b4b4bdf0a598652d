"""`@publish_event`: emit an event after a route function has succeeded (after its commit).

The decorated function runs first; only when it returns normally is its return value turned into
the event's `data` and published. If it raises, nothing is published and the exception propagates
unchanged. The return value is always handed back untouched.

The bus is given explicitly (`bus=`) or taken from `current_bus`, a context variable the
application sets per request, so route modules need no global bus and several apps can share a
process (as the tests do).

With `session="db"` (the name of the route's SQLAlchemy `Session` parameter) the event goes
through the transactional outbox (`wsmigrate.unified.transactional_outbox`): the route does its
work and flushes, but does not commit; the decorator writes the event into the same transaction
and commits both. Then it waits (at most `wait_s`) for the relay to publish it, so with a healthy
bus the event is sequenced before the response, as without the outbox. If the bus is down the
request still succeeds and the event is published when the bus is back. The outbox is given
(`outbox=`) or taken from `current_outbox`, which `WsMigrate` sets when it has one.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, cast

from sqlalchemy.orm import Session

from wsmigrate.unified.bus import EventBus
from wsmigrate.unified.catalog import EventName
from wsmigrate.unified.errors import BusClosedError
from wsmigrate.unified.events import Event
from wsmigrate.unified.transactional_outbox import COMMITS, OutboxError, TransactionalOutbox, watch

P = ParamSpec("P")
R = TypeVar("R")

current_bus: ContextVar[EventBus | None] = ContextVar("wsmigrate_current_bus", default=None)
current_outbox: ContextVar[TransactionalOutbox | None] = ContextVar("wsmigrate_current_outbox", default=None)
DEFAULT_WAIT_S = 2.0
log = logging.getLogger(__name__)
_warned: set[str] = set()


def to_event_data(value: object) -> dict[str, Any]:
    """Turn a route's return value into event data (pydantic models, dataclasses, mappings)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return cast(dict[str, Any], dump(mode="json"))
    if isinstance(value, Mapping):
        return dict(value)
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return {name: getattr(value, name) for name in fields}
    raise TypeError(f"cannot turn {type(value).__name__} into event data; return a model or a mapping")


def _resolve(bus: EventBus | None) -> EventBus:
    resolved = bus or current_bus.get()
    if resolved is None:
        raise BusClosedError("no event bus: pass bus= or run inside an app that sets current_bus")
    return resolved


def _resolve_outbox(outbox: TransactionalOutbox | None) -> TransactionalOutbox:
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
    event = _resolve(bus).new_event(event_type, data)
    _resolve_outbox(outbox).stage(session, event)
    return event


class _Transactional:
    """The outbox half of one decorated call: find the session, check the route left the commit to
    us, stage the event and commit."""

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
        outbox = _resolve_outbox(self.outbox)
        if session.info.get(COMMITS, 0) != commits_before and self.name not in _warned:
            _warned.add(self.name)
            log.warning("%s committed before @publish_event could stage its %s event: the change and its "
                        "event are not atomic; flush() in the route and let the decorator commit",
                        self.name, event.type)
        outbox.stage(session, event)
        session.commit()
        return outbox


def publish_event(
    event_type: EventName,
    *,
    bus: EventBus | None = None,
    data: Callable[[Any], Mapping[str, Any]] = to_event_data,
    session: str | None = None,
    outbox: TransactionalOutbox | None = None,
    wait_s: float = DEFAULT_WAIT_S,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async function so its successful result is published as `event_type`.

    `session`: the name of the function's SQLAlchemy `Session` parameter, to publish through the
    transactional outbox (see module docstring)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if session is not None:
            return _transactional(func, _Transactional(func, session, outbox))
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                result = await func(*args, **kwargs)
                target = _resolve(bus)
                await target.publish(target.new_event(event_type, data(result)))
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            result = func(*args, **kwargs)
            target = _resolve(bus)
            target.publish_sync(target.new_event(event_type, data(result)))
            return result

        return sync_wrapper

    def _transactional(func: Callable[P, R], tx: _Transactional) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                db = tx.session_of(args, kwargs)
                commits = db.info.get(COMMITS, 0)
                result = await func(*args, **kwargs)
                event = _resolve(bus).new_event(event_type, data(result))
                await tx.commit(db, commits, event).published([event.event_id], wait_s)
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            db = tx.session_of(args, kwargs)
            commits = db.info.get(COMMITS, 0)
            result = func(*args, **kwargs)
            event = _resolve(bus).new_event(event_type, data(result))
            tx.commit(db, commits, event).published_sync([event.event_id], wait_s)
            return result

        return sync_wrapper

    return decorate
