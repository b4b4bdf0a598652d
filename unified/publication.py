"""A published event as it travels inside a node: the envelope plus its per-topic positions.

One logical event may go to several topics (a task event goes to `board:…` and `task:…`); each
topic numbers it with its own `seq`. The wire frame for each topic is encoded once (JSON text and
the finished WebSocket frame, see `unified.wire`) and reused for every recipient of that topic,
because per-recipient encoding dominates fan-out cost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wsmigrate.unified.events import Event, StreamPosition
from wsmigrate.unified.wire import EncodedFrame


@dataclass(frozen=True, slots=True)
class Position:
    """Where a topic's stream stands: `seq` of the newest event in the history epoch `epoch`.

    `event_id`, when known, is the id of the event at `seq`: a replay from this position then
    proves continuity (the event at `seq` is still that one) instead of trusting the numbers, which
    a Redis restored from an older snapshot hands out again for other events.
    """

    epoch: str
    seq: int
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rollout:
    """The rollout decision made once, when an event enters, and carried with it to every worker:
    the stage its type was in, the live cohort percentage, the flags revision. The unified path only
    carries it; the dual path (`wsmigrate.bridge.dual_path`) made it and acts on it."""

    stage: str = "off"
    live_percent: int = 0
    flags_revision: int = 0


NO_ROLLOUT = Rollout()


@dataclass(frozen=True, slots=True)
class Ingress:
    """What is known of an event when it entered, and travels with it (never sent to clients):
    where it came from, the one user who may see it (the catalogue's audience rule), the rollout
    decision, and, for an event translated from a frame of another protocol (a legacy broadcast),
    that frame's JSON text exactly as the application sent it (`source_frame`): the path of that
    protocol delivers it unchanged, so what the other path renders can be compared with it."""

    origin: str = "bus"
    audience: str | None = None
    rollout: Rollout = NO_ROLLOUT
    source_frame: str | None = None

    def to_json(self) -> str:
        """For the Redis stream: every worker acts on the same facts."""
        rollout = self.rollout
        facts: dict[str, object] = {"origin": self.origin, "audience": self.audience,
                                    "rollout": [rollout.stage, rollout.live_percent, rollout.flags_revision]}
        if self.source_frame is not None:
            facts["source"] = self.source_frame
        return json.dumps(facts, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Ingress:
        """The facts `to_json` wrote (ValueError when they are not)."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("ingress facts are not a JSON object")
        stage, live_percent, revision = raw.get("rollout") or ("off", 0, 0)
        audience, source = raw.get("audience"), raw.get("source")
        return cls(origin=str(raw.get("origin", "bus")), audience=None if audience is None else str(audience),
                   rollout=Rollout(str(stage), int(live_percent), int(revision)),
                   source_frame=None if source is None else str(source))


@dataclass(slots=True, eq=False)
class Publication:
    """An event after the bus sequenced it, with the facts of its ingress (`Ingress`).

    `part`: on a sharded bus, an event whose topics fall in several shards is sequenced by each of
    those shards for its own topics, and travels as one publication per shard; `part` is its index
    (0 holds the event's primary topic), None for a whole event. The effects an event has once per
    node (its handlers, the legacy path's delivery) happen on part 0 only (`secondary`); a
    connection gets each part once (`once_key`), each with the topics and positions of its shard.
    """

    event: Event
    topics: tuple[str, ...]
    seqs: dict[str, int]
    epochs: dict[str, str]
    ingress: Ingress = field(default_factory=Ingress)
    ingress_ns: int = field(default_factory=time.perf_counter_ns)
    part: int | None = None
    _frames: dict[str, EncodedFrame] = field(default_factory=dict)

    @property
    def secondary(self) -> bool:
        """A part of a split event other than the one holding its primary topic."""
        return bool(self.part)

    @property
    def once_key(self) -> str:
        """What a connection receives once: the event, or this part of it."""
        return self.event.event_id if self.part is None else f"{self.event.event_id}#{self.part}"

    @property
    def event_type(self) -> str:
        return self.event.type

    @property
    def origin(self) -> str:
        return self.ingress.origin

    def position(self, topic: str) -> Position:
        return Position(self.epochs[topic], self.seqs[topic])

    def envelope(self, topic: str) -> Event:
        """The envelope as a subscriber of `topic` sees it (topic, seq and epoch of that topic; for an
        event of several topics, its `positions` on all of them)."""
        positions = None
        if len(self.topics) > 1:
            positions = {t: StreamPosition(epoch=self.epochs[t], seq=self.seqs[t]) for t in self.topics}
        return self.event.sequenced(topic, self.seqs[topic], self.epochs[topic], positions)

    def memo(self, key: str, build: Callable[[], str]) -> EncodedFrame:
        """A frame of another protocol (say, the legacy one), built once per publication."""
        cached = self._frames.get(key)
        if cached is None:
            cached = self._frames[key] = EncodedFrame(build())
        return cached

    def encoded(self, topic: str) -> EncodedFrame:
        """The frame for subscribers of `topic`, encoded once."""
        cached = self._frames.get(topic)
        if cached is None:
            event = self.event
            # The event entered the bus stamped for its primary topic: no copy needed for that one
            # (unless it has several topics, whose positions every copy carries).
            envelope = event if topic == event.topic and len(self.topics) == 1 else self.envelope(topic)
            cached = self._frames[topic] = EncodedFrame(envelope.model_dump_json())
        return cached

    def frame(self, topic: str) -> str:
        """The JSON text frame for `topic`, encoded once."""
        return self.encoded(topic).text
