"""Topic grammar: `agents`, `system`, `agent:{int}`, `thread:{int}` (pure, no I/O).

Parsing lives apart from the connection manager so that the grammar can be tested without sockets
and shared by every component that needs to understand a topic (routing, authorisation, legacy
compatibility).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from wsmigrate.unified.errors import InvalidTopicError

TopicKind = Literal["agents", "system", "agent", "thread", "probe"]

COLLECTION_TOPICS: frozenset[str] = frozenset({"agents", "system"})
_RESOURCE = re.compile(r"^(agent|thread):([1-9][0-9]{0,17})$")
# Synthetic probes travel on their own topic so they never reach application clients.
PROBE_TOPIC = "probe"
MAX_TOPIC_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic. `resource_id` is set for `agent:{id}` and `thread:{id}`."""

    kind: TopicKind
    resource_id: int | None = None

    def __str__(self) -> str:
        return self.kind if self.resource_id is None else f"{self.kind}:{self.resource_id}"


def parse_topic(raw: object) -> Topic:
    """Parse `raw` or raise `InvalidTopicError` (the wire error `invalid_topic`)."""
    if not isinstance(raw, str) or len(raw) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(f"invalid topic {raw!r}")
    if raw in COLLECTION_TOPICS:
        return Topic(kind=raw)  # type: ignore[arg-type]
    if raw == PROBE_TOPIC:
        return Topic(kind="probe")
    match = _RESOURCE.match(raw)
    if match is None:
        raise InvalidTopicError(f"invalid topic {raw!r}: expected agents, system, agent:<id> or thread:<id>")
    return Topic(kind=match.group(1), resource_id=int(match.group(2)))  # type: ignore[arg-type]


def agent_topic(agent_id: int) -> str:
    return f"agent:{agent_id}"


def thread_topic(thread_id: int) -> str:
    return f"thread:{thread_id}"
