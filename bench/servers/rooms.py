"""Topic rooms shared by the peer servers: `topic -> set of sockets`, with each socket's own topics.

The peers are deliberately minimal (what a team would write by hand); this is the part they have
in common, kept in one place so every peer pays exactly the same bookkeeping cost.
"""

from __future__ import annotations

from typing import Generic, TypeVar

Socket = TypeVar("Socket")


class Rooms(Generic[Socket]):
    def __init__(self) -> None:
        self.members: dict[str, set[Socket]] = {}

    def join(self, ws: Socket, mine: set[str], topic: str) -> None:
        mine.add(topic)
        self.members.setdefault(topic, set()).add(ws)

    def leave(self, ws: Socket, mine: set[str], topic: str) -> None:
        mine.discard(topic)
        members = self.members.get(topic)
        if members is not None:
            members.discard(ws)
            if not members:
                del self.members[topic]

    def get(self, topic: str) -> set[Socket] | None:
        return self.members.get(topic)
