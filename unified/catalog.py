"""The event catalogue an application declares: its event types, their topics and their audiences.

Pure, no I/O. wsmigrate knows no event type of its own: the application declares each one with

* a **topic rule**: the topics an event of the type is delivered to, primary first, either as
  templates filled from the event's data (`"board:{board_id}"`; `"task:{id|task_id}"` takes the
  first of the fields that is present) or as a function of the data;
* an optional **audience rule**: the one user who may see the event (a data field such as
  `"owner_id"`, or a function); None means every subscriber of its topics.

    catalog = EventCatalog(topics=["board:{board_id:uuid}", "task:{task_id:uuid}", "boards"])
    catalog.event("task_created", topics=["board:{board_id}", "task:{id}"])
    catalog.event("board_created", topics=["boards"], audience="owner_id")

Every topic a rule produces must be one of the declared topic patterns (checked when a template
is declared, and again on each produced topic), so an event always lands on topics that a client
can subscribe to. The catalogue is the one source of the event-type names: flags documents, metric
labels, the admin API and the CLI all take them from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from wsmigrate.unified.errors import InvalidTopicError, RoutingError, UnknownEventTypeError
from wsmigrate.unified.events import Event, new_event_id
from wsmigrate.unified.topics import Topic, TopicGrammar, TopicPattern

TopicRule = Callable[[Mapping[str, Any]], Sequence[str]]
AudienceRule = Callable[[Mapping[str, Any]], object]
EventName = str | Enum

EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# `unknown` labels legacy frames that carry no event type; `wsmigrate_*` names are wsmigrate's own.
RESERVED_NAMES = frozenset({"unknown"})
_FIELDS = re.compile(r"\{([a-z_][a-z0-9_]*(?:\|[a-z_][a-z0-9_]*)*)\}")
_TYPED_PARAM = re.compile(r"\{[a-z_][a-z0-9_]*(?::[a-z]+)?\}")


def event_name(name: EventName) -> str:
    """The string name of an event type (an application may use its own `StrEnum`)."""
    value = name.value if isinstance(name, Enum) else name
    if not isinstance(value, str):
        raise TypeError(f"an event type is a string, not {type(value).__name__}")
    return value


def _shape(text: str, placeholder: re.Pattern[str]) -> str:
    return placeholder.sub("{}", text)


def _id_text(value: object) -> str | None:
    """A data value as it appears in a topic; None for what no topic parameter accepts."""
    if value is None or isinstance(value, bool | float | dict | list):
        return None
    return str(value)


@dataclass(frozen=True, slots=True)
class _Template:
    """One topic template of a rule, bound to the declared pattern it produces."""

    text: str
    pattern: TopicPattern
    slots: tuple[tuple[str, tuple[str, ...]], ...]  # (pattern parameter, data fields to try in order)

    def render(self, event_type: str, data: Mapping[str, Any]) -> str:
        values: dict[str, str] = {}
        for param, fields in self.slots:
            found = next((t for t in (_id_text(data.get(f)) for f in fields) if t is not None), None)
            if found is None:
                raise RoutingError(f"{event_type} data needs {' or '.join(fields)} for topic {self.text!r}")
            values[param] = found
        try:
            return self.pattern.format(**values)
        except InvalidTopicError as exc:
            raise RoutingError(f"{event_type}: {exc}") from None


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One declared event type."""

    name: str
    topic_rule: TopicRule
    audience_rule: AudienceRule | None
    templates: tuple[_Template, ...] | None  # None when the rule is a function
    internal: bool = False  # wsmigrate's own (the probe): not an application type

    @property
    def single_topic(self) -> bool:
        """Declared with exactly one topic template: an event's topics are its own `topic`."""
        return self.templates is not None and len(self.templates) == 1


class EventCatalog:
    """The application's event types and topic patterns (see module docstring)."""

    def __init__(self, *, topics: Iterable[str | TopicPattern] = ()) -> None:
        self.grammar = TopicGrammar(topics)
        self._specs: dict[str, EventSpec] = {}

    # -- declaring -------------------------------------------------------------------------------

    def topic(self, pattern: str | TopicPattern) -> TopicPattern:
        """Declare a topic pattern such as `board:{board_id:uuid}` (see `wsmigrate.unified.topics`)."""
        return self.grammar.add(pattern)

    def event(
        self,
        name: EventName,
        *,
        topics: Sequence[str] | TopicRule,
        audience: str | AudienceRule | None = None,
    ) -> EventSpec:
        """Declare an event type with its topic rule (primary topic first) and audience rule."""
        text = event_name(name)
        if EVENT_NAME.fullmatch(text) is None or text in RESERVED_NAMES or text.startswith("wsmigrate"):
            raise ValueError(f"event type {text!r}: use 1-64 of a-z 0-9 _, starting with a letter "
                             f"(not {', '.join(sorted(RESERVED_NAMES))} or wsmigrate*)")
        if text in self._specs:
            raise ValueError(f"event type {text!r} is declared twice")
        templates: tuple[_Template, ...] | None = None
        if callable(topics):
            rule: TopicRule = topics
        else:
            if isinstance(topics, str) or not topics:
                raise ValueError(f"event type {text!r}: topics is a list of templates (primary first) or a function")
            templates = tuple(self._template(text, t) for t in topics)
            bound = templates

            def rule(data: Mapping[str, Any]) -> Sequence[str]:
                return [t.render(text, data) for t in bound]
        audience_rule: AudienceRule | None
        if isinstance(audience, str):
            field_name = audience

            def audience_rule(data: Mapping[str, Any]) -> object:
                return data.get(field_name)
        else:
            audience_rule = audience
        spec = self._specs[text] = EventSpec(text, rule, audience_rule, templates)
        return spec

    def declare_internal(self, name: str, topic: str) -> EventSpec:
        """wsmigrate's own event type on one reserved topic (the probe's): routable like any other
        type, but not among `names`, so no application figure (flags, parity, report) counts it."""
        if not name.startswith("wsmigrate_") or not self.grammar.is_valid(topic):
            raise ValueError(f"internal event type {name!r} on {topic!r}")
        existing = self._specs.get(name)
        if existing is not None:
            return existing
        spec = self._specs[name] = EventSpec(name, lambda data: [topic], None, None, internal=True)
        return spec

    def _template(self, event_type: str, text: str) -> _Template:
        shape = _shape(text, _FIELDS)
        pattern = next((p for p in self.grammar.patterns if _shape(p.text, _TYPED_PARAM) == shape), None)
        if pattern is None:
            declared = ", ".join(p.text for p in self.grammar.patterns) or "none"
            raise ValueError(f"event type {event_type!r}: topic {text!r} matches no declared topic "
                             f"(declared: {declared})")
        fields = [tuple(m.group(1).split("|")) for m in _FIELDS.finditer(text)]
        slots = tuple((param, fields[i]) for i, (param, _) in enumerate(pattern.params))
        return _Template(text, pattern, slots)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """Every event type the application declared, in declaration order."""
        return tuple(name for name, spec in self._specs.items() if not spec.internal)

    @property
    def internal_names(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self._specs.items() if spec.internal)

    def __contains__(self, name: object) -> bool:
        """Whether `name` is an application type (wsmigrate's internal ones are not)."""
        return isinstance(name, str) and name in self._specs and not self._specs[name].internal

    def spec(self, name: EventName) -> EventSpec:
        text = event_name(name)
        spec = self._specs.get(text)
        if spec is None:
            raise UnknownEventTypeError(f"unknown event type {text!r}; declared: {', '.join(self.names) or 'none'}")
        return spec

    def parse_topic(self, raw: object) -> Topic:
        return self.grammar.parse(raw)

    def topics_for(self, name: EventName, data: Mapping[str, Any]) -> list[str]:
        """The topics an event of this type with `data` is delivered to, primary first (checked)."""
        spec = self.spec(name)
        topics = list(dict.fromkeys(spec.topic_rule(data)))
        if not topics:
            raise RoutingError(f"{spec.name}: the topic rule gave no topic")
        if spec.templates is None:  # a function: check what it produced
            for topic in topics:
                try:
                    self.grammar.parse(topic)
                except InvalidTopicError as exc:
                    raise RoutingError(f"{spec.name}: {exc}") from None
        return topics

    def audience(self, event: Event) -> str | None:
        """The one user who may see `event`, or None for every subscriber of its topics."""
        rule = self.spec(event.type).audience_rule
        if rule is None:
            return None
        value = rule(event.data)
        return None if value is None else str(value)

    def create(self, name: EventName, data: Mapping[str, Any], *, event_id: str | None = None) -> Event:
        """An event of a declared type whose primary topic follows the type's topic rule."""
        text = event_name(name)
        topics = self.topics_for(text, data)
        return Event(type=text, topic=topics[0], data=dict(data), event_id=event_id or new_event_id())

    def delivery_topics(self, event: Event) -> list[str]:
        """All topics of `event`: its primary topic plus the rule's others (deduplicated, ordered).

        An event published to an explicit topic outside its rule (operators' synthetic events)
        goes to that topic only; so does every event of a single-topic type, whose rule has
        nothing to add (and is not worked out again).
        """
        spec = self.spec(event.type)
        if spec.single_topic:
            return [event.topic]
        try:
            rule = self.topics_for(spec.name, event.data)
        except RoutingError:
            return [event.topic]
        if event.topic not in rule:
            return [event.topic]
        return [event.topic, *(t for t in rule if t != event.topic)]
