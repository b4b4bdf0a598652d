"""Cohorts decided by the team's flag system: which legacy connections of a `shadow` type it serves live.

wsmigrate's own cohort is a percentage of a stable hash (`live_percent`, `bridge/stages.py`),
stamped on the event. A store that implements `TargetedCohorts` (the OpenFeature store) lets the
provider's targeting decide instead: its percentage rollout on the user id, its segments, its
per-user overrides. `ProviderCohorts` keeps, per legacy connection, the set of `shadow` types the
provider puts it in the live cohort of:

- decided when the connection opens (one evaluation per `shadow` type), and
- decided again, for every connection, when the store's cohort listener fires (the provider
  announced a change, the flags document changed, or its periodic refresh), in slices of
  `SLICE` connections per event-loop turn, so ten thousand connections never stall the loop.

Both paths read the membership with `live()` inside the same synchronous bus dispatch, and a
connection's membership is only ever replaced between dispatches, so for every event and socket
exactly one path writes, as with the stamped percentage. A connection moves cohort between two
events, never in the middle of one.

Callbacks registered here: `refresh_all` is the store's cohort listener (`DualPath.install`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from wsmigrate.bridge.flags import TargetedCohorts
from wsmigrate.bridge.stages import FlagsDocument, Stage, resolve

log = logging.getLogger(__name__)

SLICE = 500
NO_TYPES: frozenset[str] = frozenset()


class ProviderCohorts:
    """Live-cohort membership of legacy connections, as the flag system decides it (module docstring)."""

    def __init__(self, source: TargetedCohorts, document: Callable[[], FlagsDocument],
                 event_types: Sequence[str]) -> None:
        self.source = source
        self._document = document
        self.event_types = tuple(event_types)
        self._members: dict[str, frozenset[str]] = {}  # client id -> the shadow types it is live for
        self._who: dict[str, tuple[str, str]] = {}  # client id -> (identity, kind)
        self._generation = 0  # a newer refresh supersedes the slices of an older one
        self.refreshes = 0  # completed re-evaluations of every connection

    def shadow_types(self) -> tuple[str, ...]:
        document = self._document()
        return tuple(t for t in self.event_types if resolve(document, t).stage is Stage.SHADOW)

    def live(self, client_id: str, event_type: str) -> bool:
        return event_type in self._members.get(client_id, NO_TYPES)

    def add(self, client_id: str, identity: str, kind: str) -> None:
        self._who[client_id] = (identity, kind)
        self._members[client_id] = self._evaluate(identity, kind, self.shadow_types())

    def remove(self, client_id: str) -> None:
        self._who.pop(client_id, None)
        self._members.pop(client_id, None)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per `shadow` type: this worker's legacy connections in the live cohort and the rest."""
        members = tuple(self._members.values())  # one C-level copy: safe to read from the report's worker
        total = len(members)
        counts = {}
        for event_type in self.shadow_types():
            live = sum(1 for types in members if event_type in types)
            counts[event_type] = {"live": live, "legacy": total - live}
        return counts

    def refresh_all(self) -> None:
        """Re-decide every connection (the store's cohort listener), a slice per loop turn."""
        self._generation += 1
        clients = list(self._who)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test, a shutdown): all at once
            self._refresh_slice(self._generation, clients, 0, None)
            return
        self._refresh_slice(self._generation, clients, 0, loop)

    def _refresh_slice(self, generation: int, clients: list[str], start: int,
                       loop: asyncio.AbstractEventLoop | None) -> None:
        if generation != self._generation:
            return  # a newer refresh started over
        types = self.shadow_types()
        end = len(clients) if loop is None else min(len(clients), start + SLICE)
        for client_id in clients[start:end]:
            who = self._who.get(client_id)
            if who is not None:  # still connected
                self._members[client_id] = self._evaluate(*who, types)
        if end < len(clients) and loop is not None:
            loop.call_soon(self._refresh_slice, generation, clients, end, loop)
        else:
            self.refreshes += 1

    def _evaluate(self, identity: str, kind: str, types: Sequence[str]) -> frozenset[str]:
        if not types:
            return NO_TYPES
        return frozenset(t for t in types if self.source.in_live_cohort(t, identity, kind))
