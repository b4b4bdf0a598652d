"""Bounded per-topic history with epochs: the memory behind `seq`, replay and `recovered`.

Why epochs: a `seq` alone cannot tell a client whether the server still has the stream it was
reading. The epoch names one unbroken history of a topic on this node; it changes whenever that
history is lost (process restart, the topic log evicted under the topic cap), so a client's
`since` from another epoch is answered with `recovered: false` instead of a silent gap.

Everything is bounded: events per topic, their age, and the number of topics kept.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from unified.publication import Position, Publication

DEFAULT_HISTORY_SIZE = 300
DEFAULT_HISTORY_TTL_S = 300.0
DEFAULT_MAX_TOPICS = 100_000


def new_epoch() -> str:
    return secrets.token_hex(4)


@dataclass(slots=True)
class _TopicLog:
    epoch: str
    seq: int = 0
    entries: deque[tuple[float, Publication]] = field(default_factory=deque)


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
            log = _TopicLog(epoch=new_epoch())
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
        now = self._clock()
        for topic in publication.topics:
            log = self._log(topic)
            if self.size == 0:
                continue
            log.entries.append((now, publication))
            if len(log.entries) > self.size:
                log.entries.popleft()
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
        if since.seq == log.seq:
            return []
        self._expire(log, self._clock())
        if not log.entries:
            return None
        oldest = log.entries[0][1].seqs[topic]
        if oldest > since.seq + 1:
            return None
        return [pub for _, pub in log.entries if pub.seqs[topic] > since.seq]
