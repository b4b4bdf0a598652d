"""Translations: the only place that knows both a legacy frame and the unified event it carries.

Pure functions, no I/O. The application declares one `Translation` per legacy frame type its old
code broadcast: which event type the frame carries, where the old code broadcast it (a legacy
scope, or `global` for every legacy socket), which field of the event's data holds the target id,
and how to turn one shape into the other. Two builders cover the common shapes:

    flat("task_moved", "task_moved", scope="board", target="board_id")
        {"type": "task_moved", "board_id": ..., "column": ...}  <->  data {"board_id": ..., "column": ...}
    nested("task_added", "task_created", key="task", scope="board", target="board_id", outer=("board_id",))
        {"type": "task_added", "board_id": ..., "task": {...}}    <->  data {...the task...}

A frame type with no event type (a legacy feature the new protocol does not carry) is declared
`legacy_only(...)`: it is delivered the old way forever and counted, and `wsmigrate report` lists
it as what still blocks retiring the legacy path. A frame type that is not declared at all is
treated the same way (and logged), so nothing is ever dropped.

Round trips should be exact: a legacy frame translated to an event and rendered back equal to the
original, so mirroring never changes what a legacy client sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from wsmigrate.bridge.errors import TranslationError
from wsmigrate.legacy.frames import Frame

GLOBAL_SCOPE = "global"
TargetId = int | str
ToEvent = Callable[[Mapping[str, Any]], dict[str, Any]]
ToFrame = Callable[[Mapping[str, Any]], Frame]


class LegacyRoute(NamedTuple):
    """Where the old code broadcast a frame: a scope and its target id, or global (no id).

    A named tuple because one is built for every event the bridge sees."""

    scope: str
    target_id: TargetId | None


def _name(value: str | Enum | None) -> str | None:
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True, slots=True)
class Translation:
    """One legacy frame type and the event type it carries (None: `legacy_only`)."""

    frame_type: str
    event_type: str | None
    scope: str
    target: tuple[str, ...]  # event data fields holding the target id, the first present wins
    to_event: ToEvent  # legacy frame -> event data
    to_frame: ToFrame  # event data -> legacy frame

    @property
    def legacy_only(self) -> bool:
        return self.event_type is None


def _targets(target: str | Iterable[str]) -> tuple[str, ...]:
    return (target,) if isinstance(target, str) else tuple(target)


def flat(frame_type: str, event_type: str | Enum | None = None, *, scope: str,
         target: str | Iterable[str] = ()) -> Translation:
    """A frame whose fields, next to `type`, are the event's data (`event_type` defaults to the frame type)."""

    def to_event(frame: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in frame.items() if k != "type"}

    def to_frame(data: Mapping[str, Any]) -> Frame:
        return {"type": frame_type, **data}

    return Translation(frame_type, _name(event_type) or frame_type, scope, _targets(target), to_event, to_frame)


def nested(frame_type: str, event_type: str | Enum, *, key: str, scope: str, target: str | Iterable[str] = (),
           outer: Iterable[str] = ()) -> Translation:
    """A frame carrying the event's data as one object under `key`, with `outer` fields of the data
    repeated beside it (`{"type": "task_added", "board_id": "6f1c…", "task": {...}}`)."""
    outer_fields = tuple(outer)

    def to_event(frame: Mapping[str, Any]) -> dict[str, Any]:
        inner = frame.get(key)
        if not isinstance(inner, Mapping):
            raise TranslationError(f"{frame_type} without a {key} object")
        return dict(inner)

    def to_frame(data: Mapping[str, Any]) -> Frame:
        missing = [f for f in outer_fields if f not in data]
        if missing:
            raise TranslationError(f"{_name(event_type)} data lacks {', '.join(missing)} for {frame_type}")
        return {"type": frame_type, **{f: data[f] for f in outer_fields}, key: dict(data)}

    return Translation(frame_type, _name(event_type), scope, _targets(target), to_event, to_frame)


def legacy_only(frame_type: str, *, scope: str) -> Translation:
    """A frame type that carries no event type: delivered the old way, counted, reported."""

    def unsupported(_: Mapping[str, Any]) -> dict[str, Any]:
        raise TranslationError(f"{frame_type} is legacy-only")

    return Translation(frame_type, None, scope, (), unsupported, unsupported)


def _target_id(value: object) -> TargetId | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str) and value != "":
        return value
    return None


class TranslationTable:
    """The application's translations, indexed both ways (see module docstring).

    `scopes` names, for each legacy scope, the unified topic a legacy socket following one target
    of it corresponds to (`{"board": "board:{id}"}`; a scope without `{id}` is one topic whatever
    the target), and `global_topic` the topic of `global` broadcasts (needed only by an app whose
    old code broadcast to every socket): the unified path serves a legacy socket through exactly
    those topics.
    """

    def __init__(self, translations: Iterable[Translation] = (), *, scopes: Mapping[str, str],
                 global_topic: str | None = None) -> None:
        self._by_frame: dict[str, Translation] = {}
        self._by_event: dict[str, Translation] = {}
        self.scopes: dict[str, str] = {}
        for name, template in scopes.items():
            self.add_scope(name, template)
        self.global_topic = global_topic
        for translation in translations:
            self.add(translation)

    def add_scope(self, name: str, template: str) -> None:
        if name == GLOBAL_SCOPE or template.count("{id}") > 1:
            raise ValueError(f"legacy scope {name!r}: its topic template has at most one {{id}}")
        self.scopes[name] = template

    def add(self, translation: Translation) -> Translation:
        if translation.scope == GLOBAL_SCOPE and self.global_topic is None:
            raise ValueError(f"{translation.frame_type}: a global frame needs the table's global_topic "
                             "(the unified topic of broadcasts to every socket)")
        if translation.scope != GLOBAL_SCOPE and translation.scope not in self.scopes:
            raise ValueError(f"{translation.frame_type}: unknown legacy scope {translation.scope!r} "
                             f"(declared: {', '.join(self.scopes)}, {GLOBAL_SCOPE})")
        if translation.frame_type in self._by_frame:
            raise ValueError(f"legacy frame type {translation.frame_type!r} is translated twice")
        if translation.event_type is not None and translation.event_type in self._by_event:
            raise ValueError(f"event type {translation.event_type!r} has two legacy frames")
        self._by_frame[translation.frame_type] = translation
        if translation.event_type is not None:
            self._by_event[translation.event_type] = translation
        return translation

    @property
    def translations(self) -> tuple[Translation, ...]:
        return tuple(self._by_frame.values())

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types that have a legacy frame (and so reach legacy sockets)."""
        return tuple(self._by_event)

    @property
    def legacy_only_frames(self) -> tuple[str, ...]:
        return tuple(t.frame_type for t in self._by_frame.values() if t.legacy_only)

    def for_frame(self, frame: Mapping[str, Any]) -> Translation | None:
        return self._by_frame.get(str(frame.get("type")))

    def for_event(self, event_type: str) -> Translation | None:
        return self._by_event.get(event_type)

    def to_event(self, frame: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """A legacy broadcast frame as (event type, data); None for a legacy-only or unknown frame type."""
        translation = self.for_frame(frame)
        if translation is None or translation.event_type is None:
            return None
        return translation.event_type, translation.to_event(frame)

    def legacy_route(self, event_type: str, data: Mapping[str, Any]) -> LegacyRoute:
        """Where the old app would have broadcast this event (cheap: no frame is built)."""
        translation = self._by_event.get(event_type)
        if translation is None:
            raise TranslationError(f"{event_type} has no legacy frame")
        if translation.scope == GLOBAL_SCOPE:
            return LegacyRoute(GLOBAL_SCOPE, None)
        for field in translation.target:
            found = _target_id(data.get(field))
            if found is not None:
                return LegacyRoute(translation.scope, found)
        raise TranslationError(f"{event_type} data lacks its legacy target {' or '.join(translation.target)}")

    def topic_of(self, route: LegacyRoute) -> str:
        """The unified topic a legacy socket following `route` is served through."""
        if route.scope == GLOBAL_SCOPE:
            if self.global_topic is None:
                raise TranslationError("global broadcasts need the table's global_topic")
            return self.global_topic
        return self.scopes[route.scope].replace("{id}", str(route.target_id))

    def legacy_frame(self, event_type: str, data: Mapping[str, Any]) -> Frame:
        """The frame the old app would have sent for this event."""
        translation = self._by_event.get(event_type)
        if translation is None:
            raise TranslationError(f"{event_type} has no legacy frame")
        return translation.to_frame(data)
