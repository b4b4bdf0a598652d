"""Topic grammar: the patterns an application declares, matched against whole strings (pure, no I/O).

An application declares its topics as patterns with typed parameters:

    board:{board_id:uuid}     task:{task_id:uuid}     room:{room_id:int}     boards

| parameter type | accepts                                                       | value        |
|----------------|---------------------------------------------------------------|--------------|
| `int`          | a decimal id in 1 .. 2**63-1, no sign, no leading zero        | `int`        |
| `uuid`         | a UUID in canonical form: 36 characters, lowercase hex        | `uuid.UUID`  |
| `slug`         | 1-64 of `a-z 0-9 _ -`, starting with a letter or digit        | `str`        |

A topic matches a pattern only as a whole string (`re.fullmatch`: `"room:1\\n"` is not
`room:1`), and ids are bounded where they enter, so a topic that parses is one the application's
database can look up. Non-canonical spellings (`room:07`, an uppercase UUID) are refused rather
than normalised: a topic is routed by its exact string, and two spellings of one resource would be
two topics, one of which never receives anything.

`probe` is reserved for wsmigrate's synthetic probes and is never an application topic.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from wsmigrate.unified.errors import InvalidTopicError

ParamType = Literal["int", "uuid", "slug"]
ParamValue = int | uuid.UUID | str

PROBE_TOPIC = "probe"
MAX_TOPIC_LENGTH = 128
MAX_INT_ID = 2**63 - 1  # a signed 64-bit column: what SQL databases store

_PARAM_REGEX: dict[str, str] = {
    "int": r"[1-9][0-9]{0,18}",
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "slug": r"[a-z0-9][a-z0-9_-]{0,63}",
}
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)(?::([a-z]+))?\}")
_LITERAL = re.compile(r"[a-z0-9_.:/-]*")


def _convert(kind: str, text: str) -> ParamValue | None:
    if kind == "int":
        value = int(text)
        return value if value <= MAX_INT_ID else None
    if kind == "uuid":
        return uuid.UUID(text)
    return text


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """One declared topic shape, e.g. `board:{board_id:uuid}` (a parameter without a type is `int`)."""

    text: str
    params: tuple[tuple[str, ParamType], ...] = field(init=False)
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _template: str = field(init=False, repr=False, compare=False)  # `board:{board_id}`, for str.format

    def __post_init__(self) -> None:
        parts: list[str] = []
        params: list[tuple[str, ParamType]] = []
        position = 0
        for match in _PLACEHOLDER.finditer(self.text):
            parts.append(self._literal(self.text[position:match.start()]))
            name, kind = match.group(1), match.group(2) or "int"
            if kind not in _PARAM_REGEX:
                raise ValueError(f"topic pattern {self.text!r}: unknown parameter type {kind!r} "
                                 f"(use {', '.join(_PARAM_REGEX)})")
            if name in (p[0] for p in params):
                raise ValueError(f"topic pattern {self.text!r}: parameter {name!r} appears twice")
            params.append((name, kind))  # type: ignore[arg-type]
            parts.append(f"(?P<{name}>{_PARAM_REGEX[kind]})")
            position = match.end()
        parts.append(self._literal(self.text[position:]))
        if not self.text or self.text == PROBE_TOPIC:
            raise ValueError(f"topic pattern {self.text!r} is empty or reserved")
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "_regex", re.compile("".join(parts)))
        object.__setattr__(self, "_template", _PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", self.text))

    def _literal(self, text: str) -> str:
        if "{" in text or "}" in text or _LITERAL.fullmatch(text) is None:
            raise ValueError(f"topic pattern {self.text!r}: literal text may use a-z 0-9 _ . : / - only")
        return re.escape(text)

    @property
    def is_collection(self) -> bool:
        """A topic without parameters (`boards`, `system`): one topic shared by many users."""
        return not self.params

    def match(self, raw: str) -> dict[str, ParamValue] | None:
        """The typed parameters when `raw` is this pattern, as a whole string; None otherwise."""
        found = self._regex.fullmatch(raw)
        if found is None:
            return None
        values: dict[str, ParamValue] = {}
        for name, kind in self.params:
            value = _convert(kind, found.group(name))
            if value is None:
                return None
            values[name] = value
        return values

    def format(self, **values: object) -> str:
        """The topic for these parameter values (checked: the result must match the pattern)."""
        missing = [name for name, _ in self.params if name not in values]
        if missing:
            raise InvalidTopicError(f"topic {self.text!r} needs {', '.join(missing)}")
        text = self._template.format(**values)
        if self.match(text) is None:
            raise InvalidTopicError(f"{text!r} is not a valid {self.text!r} topic")
        return text


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: its exact string, the pattern it matched and the typed parameters."""

    name: str
    pattern: TopicPattern | None  # None for the reserved probe topic
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name

    def param(self, name: str) -> ParamValue:
        return self.params[name]


class TopicGrammar:
    """The declared topic patterns; `parse` is the only way a client's topic string gets in."""

    def __init__(self, patterns: Iterable[TopicPattern | str] = ()) -> None:
        self._patterns: list[TopicPattern] = []
        self._collections: dict[str, TopicPattern] = {}
        for pattern in patterns:
            self.add(pattern)

    def add(self, pattern: TopicPattern | str) -> TopicPattern:
        declared = pattern if isinstance(pattern, TopicPattern) else TopicPattern(pattern)
        existing = next((p for p in self._patterns if p.text == declared.text), None)
        if existing is not None:
            return existing
        self._patterns.append(declared)
        if declared.is_collection:
            self._collections[declared.text] = declared
        return declared

    @property
    def patterns(self) -> tuple[TopicPattern, ...]:
        return tuple(self._patterns)

    def parse(self, raw: object) -> Topic:
        """Parse `raw` or raise `InvalidTopicError` (the wire error `invalid_topic`)."""
        if not isinstance(raw, str) or not raw or len(raw) > MAX_TOPIC_LENGTH:
            raise InvalidTopicError(f"invalid topic {raw!r}")
        if raw == PROBE_TOPIC:
            return Topic(raw, None)
        collection = self._collections.get(raw)
        if collection is not None:
            return Topic(raw, collection)
        for pattern in self._patterns:
            if pattern.params:
                params = pattern.match(raw)
                if params is not None:
                    return Topic(raw, pattern, params)
        expected = ", ".join(p.text for p in self._patterns) or "no topics are declared"
        raise InvalidTopicError(f"invalid topic {raw!r}: expected {expected}")

    def is_valid(self, raw: str) -> bool:
        try:
            self.parse(raw)
        except InvalidTopicError:
            return False
        return True
