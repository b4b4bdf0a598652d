"""Bounded per-topic history with epochs: the memory behind `seq`, replay and `recovered`.

Why epochs: a `seq` alone cannot tell a client whether the server still has the stream it was
reading. The epoch names one unbroken history of a topic on this node; it changes whenever that
history is lost (process restart, the topic log evicted under the topic cap), so a client's
`since` from another epoch is answered with `recovered: false` instead of a silent gap.

Everything is bounded: events per topic, their age, and the number of topics kept.

Why entries are plain tuples of strings and numbers: the history is the one place where tens of
thousands of events stay alive for minutes. Kept as objects (a publication, its event, their
dicts) they would all be tracked by CPython's cycle collector, churn into its oldest generation
and make every full collection walk them: pauses of hundreds of milliseconds at 1,000 events/s.
A tuple holding only strings and numbers is untracked by the collector after the first
collection it survives, so the history costs the collector nothing; and an entry is one such tuple
(the frame already carries topic, seq and epoch), so recording allocates almost nothing either. A
replay rebuilds its publications from the stored frame; replays are rare, live delivery is not.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsmigrate.unified.events import Event
from wsmigrate.unified.publication import Ingress, Position, Publication

DEFAULT_HISTORY_SIZE = 300
DEFAULT_HISTORY_TTL_S = 300.0
DEFAULT_MAX_TOPICS = 100_000


def new_epoch() -> str:
    return secrets.token_hex(4)


# One entry of a topic's log, a flat tuple of strings and numbers (module docstring): (recorded at,
# seq on this topic, the frame text of the event's primary topic, its ingress time), followed, for an
# event of several topics or with an audience, by (audience, then topic, seq, epoch of each of its topics).
# Flat, because the collector untracks a tuple only once every element is untracked already.
_Entry = tuple[Any, ...]
_PLAIN = 4


def _routing(publication: Publication) -> tuple[Any, ...]:
    topics = publication.topics
    audience = publication.ingress.audience
    if len(topics) == 1 and audience is None:
        return ()  # all of it is in the frame itself: topic, seq and epoch
    seqs, epochs = publication.seqs, publication.epochs
    return (audience, *(part for topic in topics for part in (topic, seqs[topic], epochs[topic])))


def _restore(entry: _Entry) -> Publication:
    """A publication rebuilt from its stored frame: the routing facts, not the ingress stamps."""
    text, ingress_ns = entry[2], entry[3]
    event = Event.model_validate_json(text)
    if len(entry) == _PLAIN:
        return Publication(event=event, topics=(event.topic,), seqs={event.topic: event.seq},
                           epochs={event.topic: event.epoch}, ingress_ns=ingress_ns)
    audience, routed = entry[_PLAIN], entry[_PLAIN + 1:]
    topics = routed[0::3]
    if event.positions is not None:  # the frame's copy of the routing facts, rebuilt per topic when sent
        event = event.model_copy(update={"positions": None})
    return Publication(event=event, topics=topics, seqs=dict(zip(topics, routed[1::3], strict=True)),
                       epochs=dict(zip(topics, routed[2::3], strict=True)),
                       ingress=Ingress(audience=audience), ingress_ns=ingress_ns)


@dataclass(slots=True)
class _TopicLog:
    epoch: str
    seq: int = 0
    entries: deque[_Entry] = field(default_factory=deque)


class TopicHistory:
    """In-memory topic logs. Not thread-safe: used from the event loop only."""

    def __init__(
        self,
        *,
        size: int = DEFAULT_HISTORY_SIZE,
        ttl_s: float = DEFAULT_HISTORY_TTL_S,
        max_topics: int = DEFAULT_MAX_TOPICS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 0 or ttl_s < 0 or max_topics < 1:
            raise ValueError("history bounds must be positive")
        self.size = size
        self.ttl_s = ttl_s
        self.max_topics = max_topics
        self._clock = clock
        self._logs: OrderedDict[str, _TopicLog] = OrderedDict()
        self.evicted_topics = 0

    def _log(self, topic: str) -> _TopicLog:
        log = self._logs.get(topic)
        if log is None:
            log = _TopicLog(epoch=new_epoch(), entries=deque(maxlen=self.size or None))
            self._logs[topic] = log
            if len(self._logs) > self.max_topics:
                self._logs.popitem(last=False)
                self.evicted_topics += 1
        else:
            self._logs.move_to_end(topic)
        return log

    def next_seq(self, topic: str) -> Position:
        """Reserve the next position of `topic` (called once per event and topic, in order)."""
        log = self._log(topic)
        log.seq += 1
        return Position(log.epoch, log.seq)

    def record(self, publication: Publication) -> None:
        """Keep `publication` in the history of each of its topics."""
        if not self.size:
            return
        topics = publication.topics
        now = self._clock()
        text = publication.frame(topics[0])
        routing = _routing(publication)
        for topic in topics:
            log = self._logs.get(topic) or self._log(topic)  # `next_seq` just touched it
            log.entries.append((now, publication.seqs[topic], text, publication.ingress_ns, *routing))  # maxlen: size
            self._expire(log, now)

    def _expire(self, log: _TopicLog, now: float) -> None:
        horizon = now - self.ttl_s
        while log.entries and log.entries[0][0] < horizon:
            log.entries.popleft()

    def position(self, topic: str) -> Position:
        log = self._log(topic)
        return Position(log.epoch, log.seq)

    def since(self, topic: str, since: Position) -> list[Publication] | None:
        """Every event of `topic` after `since`, or None when any of them is gone (never partial)."""
        log = self._log(topic)
        if since.epoch != log.epoch or since.seq < 0 or since.seq > log.seq:
            return None
        self._expire(log, self._clock())
        if since.event_id is not None and since.seq > 0:
            # One process's memory never rolls back; still, an event at `seq` other than the one
            # the client saw is no continuation of its stream.
            at = next((entry for entry in log.entries if entry[1] == since.seq), None)
            if at is not None and json.loads(at[2]).get("event_id") != since.event_id:
                return None
        if since.seq == log.seq:
            return []
        if not log.entries:
            return None
        oldest = log.entries[0][1]
        if oldest > since.seq + 1:
            return None
        return [_restore(entry) for entry in log.entries if entry[1] > since.seq]
