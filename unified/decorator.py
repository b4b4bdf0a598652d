"""`@publish_event`: emit an event after a route function has succeeded (after its commit).

The decorated function runs first; only when it returns normally is its return value turned into
the event's `data` and published. If it raises, nothing is published and the exception propagates
unchanged. The return value is always handed back untouched.

The bus is given explicitly (`bus=`) or taken from `current_bus`, a context variable the
application sets per request, so route modules need no global bus and several apps can share a
process (as the tests do).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, cast

from wsmigrate.unified.bus import EventBus
from wsmigrate.unified.catalog import EventName
from wsmigrate.unified.errors import BusClosedError

P = ParamSpec("P")
R = TypeVar("R")

current_bus: ContextVar[EventBus | None] = ContextVar("wsmigrate_current_bus", default=None)


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


def publish_event(
    event_type: EventName,
    *,
    bus: EventBus | None = None,
    data: Callable[[Any], Mapping[str, Any]] = to_event_data,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async function so its successful result is published as `event_type`."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
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

    return decorate
