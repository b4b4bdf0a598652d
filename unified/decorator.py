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
(`outbox=`) or taken from `current_outbox`, which `WsMigrate` sets when it has one. That half
lives in `wsmigrate.unified.decorator_outbox` and is imported on first use: an application
without the outbox never loads SQLAlchemy for it (~26 MiB per process).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from wsmigrate.unified.bus import EventBus
from wsmigrate.unified.catalog import EventName
from wsmigrate.unified.errors import BusClosedError

if TYPE_CHECKING:
    from wsmigrate.unified.transactional_outbox import TransactionalOutbox

P = ParamSpec("P")
R = TypeVar("R")

current_bus: ContextVar[EventBus | None] = ContextVar("wsmigrate_current_bus", default=None)
current_outbox: ContextVar[TransactionalOutbox | None] = ContextVar("wsmigrate_current_outbox", default=None)
DEFAULT_WAIT_S = 2.0


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


def resolve_bus(bus: EventBus | None) -> EventBus:
    """`bus`, else the request's `current_bus`."""
    resolved = bus or current_bus.get()
    if resolved is None:
        raise BusClosedError("no event bus: pass bus= or run inside an app that sets current_bus")
    return resolved


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
        if session is not None:  # SQLAlchemy and the outbox are imported only by an app that uses them
            from wsmigrate.unified.decorator_outbox import transactional

            return transactional(func, event_type, bus=bus, data=data, session=session, outbox=outbox,
                                 wait_s=wait_s)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                result = await func(*args, **kwargs)
                target = resolve_bus(bus)
                await target.publish(target.new_event(event_type, data(result)))
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            result = func(*args, **kwargs)
            target = resolve_bus(bus)
            target.publish_sync(target.new_event(event_type, data(result)))
            return result

        return sync_wrapper

    return decorate
