"""Which pub/sub channels a topic follower wants, and what its connection was asked for: no I/O.

`unified.redis_follower` drives one Redis connection; this is its bookkeeping, kept apart so that
the rules can be read and tested without Redis:

* A change (`want`) is recorded, not sent: the follower's command task asks `diff` for what to
  subscribe and unsubscribe since the last diff, so a channel wanted and unwanted in between never
  leaves the process, and the cost is the number of changes, not of channels.
* A new connection follows nothing (`reset`): everything wanted is sent again.
* Redis confirms every SUBSCRIBE and UNSUBSCRIBE of every channel, in order. The counts of those
  still due tell a confirmation of ours (`subscribed`, `unsubscribed` return True once a channel's
  last one arrived) from an unsubscribe Redis decided on its own (a shard channel whose slot moved:
  `unsubscribed` returns False), which means pushes were lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

SUBSCRIBE_BATCH = 1_000  # channels per SUBSCRIBE / UNSUBSCRIBE command


class PubSubCommands:
    """The names of the pub/sub commands and replies: plain channels, or a cluster's shard channels."""

    def __init__(self, sharded: bool) -> None:
        prefix = "S" if sharded else ""
        self.publish = f"{prefix}PUBLISH"
        self.subscribe = f"{prefix}SUBSCRIBE"
        self.unsubscribe = f"{prefix}UNSUBSCRIBE"
        lower = prefix.lower()
        self.message, self.subscribed, self.unsubscribed = f"{lower}message", f"{lower}subscribe", f"{lower}unsubscribe"


class ChannelSubscriptions:
    """The channels wanted now, and what the current connection was asked for (module docstring)."""

    def __init__(self, always: Iterable[str] = ()) -> None:
        self.wanted: set[str] = set(always)  # the channels followed now
        self.asked: set[str] = set()  # what Redis was asked for on the current connection
        self._dirty: set[str] = set()  # wanted or unwanted since the last diff
        self._types: set[str] = set()  # the channels `want_types` set
        self._confirming: Counter[str] = Counter()  # channel -> subscribe confirmations still due
        self._leaving: Counter[str] = Counter()  # channel -> unsubscribe confirmations still due

    def want(self, channel: str, wanted: bool) -> None:
        if wanted:
            self.wanted.add(channel)
        else:
            self.wanted.discard(channel)
        self._dirty.add(channel)

    def want_types(self, channels: set[str]) -> None:
        """Replace the set of type channels wanted (handlers and typed sinks change as a whole)."""
        for channel in channels - self._types:
            self.want(channel, True)
        for channel in self._types - channels:
            self.want(channel, False)
        self._types = set(channels)

    def reset(self) -> None:
        """A new connection: it follows nothing yet, and owes no confirmation."""
        self.asked = set()
        self._dirty.update(self.wanted)
        self._confirming.clear()
        self._leaving.clear()

    def diff(self) -> tuple[list[str], list[str]]:
        """(to subscribe, to unsubscribe) since the last diff, counted as asked from now on."""
        dirty, self._dirty = self._dirty, set()
        joining = sorted(c for c in dirty if c in self.wanted and c not in self.asked)
        leaving = sorted(c for c in dirty if c not in self.wanted and c in self.asked)
        self.asked.update(joining)
        self.asked.difference_update(leaving)
        for channel in leaving:
            self._leaving[channel] += 1
        for channel in joining:
            self._confirming[channel] += 1
        return joining, leaving

    def confirming(self) -> set[str]:
        """The channels whose subscription Redis has not confirmed yet."""
        return set(self._confirming)

    def confirmed(self, channel: str) -> bool:
        """Asked on this connection, and Redis confirmed it."""
        return channel in self.asked and not self._confirming[channel]

    def still_confirming(self, channels: Iterable[str]) -> bool:
        return any(channel in self._confirming for channel in channels)

    def subscribed(self, channel: str) -> bool:
        """A subscribe confirmation arrived: True once it was the channel's last one due."""
        due = self._confirming[channel] - 1
        if due > 0:
            self._confirming[channel] = due
            return False
        self._confirming.pop(channel, None)
        return True

    def unsubscribed(self, channel: str) -> bool:
        """An unsubscribe confirmation arrived: True if it answers ours, False if Redis dropped the
        channel on its own (its slot moved)."""
        if self._leaving[channel] > 0:
            self._leaving[channel] -= 1
            return True
        return False


def batches(channels: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(channels), SUBSCRIBE_BATCH):
        yield channels[start:start + SUBSCRIBE_BATCH]
