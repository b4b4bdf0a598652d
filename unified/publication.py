"""A published event as it travels inside a node: the envelope plus its per-topic positions.

One logical event may go to several topics (a task event goes to `board:…` and `task:…`); each
topic numbers it with its own `seq`. The wire frame for each topic is encoded once (JSON text and
the finished WebSocket frame, see `unified.wire`) and reused for every recipient of that topic,
because per-recipient encoding dominates fan-out cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsmigrate.unified.events import Event
from wsmigrate.unified.wire import EncodedFrame


@dataclass(frozen=True, slots=True)
class Position:
    """Where a topic's stream stands: `seq` of the newest event in the history epoch `epoch`."""

    epoch: str
    seq: int


@dataclass(slots=True, eq=False)
class Publication:
    """An event after the bus sequenced it.

    `meta` carries ingress stamps that must travel with the event (the stage and flag revision
    read once at ingress, the origin); it is never sent to clients.
    """

    event: Event
    topics: tuple[str, ...]
    seqs: dict[str, int]
    epochs: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)
    ingress_ns: int = field(default_factory=time.perf_counter_ns)
    _frames: dict[str, EncodedFrame] = field(default_factory=dict)

    @property
    def event_type(self) -> str:
        return self.event.type

    @property
    def origin(self) -> str:
        return str(self.meta.get("origin", "bus"))

    def position(self, topic: str) -> Position:
        return Position(self.epochs[topic], self.seqs[topic])

    def envelope(self, topic: str) -> Event:
        """The envelope as a subscriber of `topic` sees it (topic, seq and epoch of that topic)."""
        return self.event.stamped(topic, self.seqs[topic], self.epochs[topic])

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
            # The event entered the bus stamped for its primary topic: no copy needed for that one.
            envelope = event if topic == event.topic else self.envelope(topic)
            cached = self._frames[topic] = EncodedFrame(envelope.model_dump_json())
        return cached

    def frame(self, topic: str) -> str:
        """The JSON text frame for `topic`, encoded once."""
        return self.encoded(topic).text
