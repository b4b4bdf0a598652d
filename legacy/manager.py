"""`LegacyConnectionManager`: the old per-view connection manager, as a hub any old app delegates to.

Old applications' managers have methods such as `broadcast_to_room(room_id, frame)` or
`broadcast_to_board(board_id, frame)`. Here they are one generic set: `connect`, `disconnect`,
`follow(client_id, scope, target_id)` and `broadcast(scope, target_id, frame)` /
`broadcast_global(frame)`, where a *scope* is the application's own name for what a legacy socket
follows (`"room"`, `"board"`) and a target id is an int or a string (a UUID). A socket follows
the targets it was given until it closes; there is no unfollow, as in the old apps.

Two seams are new, and neither changes what a legacy client sees:

* the socket transport is injected (`LegacyOutbox`), so every frame for a socket leaves through one
  ordered queue whichever component produced it;
* a `BroadcastListener` may observe connections and intercept broadcasts. A bridge uses it to
  mirror broadcasts onto an event bus and to serve legacy sockets from the new path; `legacy`
  itself never imports that bridge. Without a listener, broadcasts are delivered the old way.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from wsmigrate.legacy.frames import Frame, encode
from wsmigrate.metrics.ledger import DeliveryTicket, PathLedger
from wsmigrate.metrics.registry import WsMetrics

log = logging.getLogger(__name__)

GLOBAL = "global"  # the scope of a broadcast to every legacy socket
Scope = str
TargetId = int | str
_ids = itertools.count(1)
_PROCESS_TAG = f"{os.getpid():x}"


class PreEncoded(Protocol):
    """A frame encoded once and written to many sockets (`unified.wire.EncodedFrame` is one)."""

    @property
    def text(self) -> str: ...

    @property
    def wire(self) -> bytes: ...


class LegacyOutbox(Protocol):
    """The ordered, bounded send queue of one socket (see unified.outbox.Outbox)."""

    closed: bool

    def put(self, frame: str | PreEncoded, ticket: DeliveryTicket | None = None) -> bool: ...

    def start(self) -> None: ...

    def shutdown(self, code: int, reason: str) -> None: ...

    def close_after_flush(self, code: int, reason: str) -> None: ...

    async def finish(self, timeout: float) -> None: ...


@dataclass(eq=False, slots=True)
class LegacyConnection:
    """One legacy socket: the view it was opened for and what it follows."""

    client_id: str
    kind: str
    outbox: LegacyOutbox
    user_id: str | None = None
    follows: set[tuple[Scope, TargetId]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Broadcast:
    """One call of a broadcast method: where it goes and the frame the old code built."""

    scope: Scope
    target_id: TargetId | None
    message: Frame


class BroadcastListener(Protocol):
    """Observes the legacy manager; implemented by a bridge."""

    async def intercept(self, broadcast: Broadcast) -> bool:
        """True when the listener took over delivering `broadcast`; False to deliver it the old way."""

    def connected(self, connection: LegacyConnection) -> None: ...

    def subscribed(self, connection: LegacyConnection, scope: Scope, target_id: TargetId) -> None: ...

    def disconnected(self, connection: LegacyConnection) -> None: ...


class LegacyConnectionManager:
    """Legacy sockets and the (scope, target) pairs they follow."""

    def __init__(self, *, metrics: WsMetrics | None = None, label_for: Callable[[Frame], str] | None = None) -> None:
        self.metrics = metrics
        self.ledger = PathLedger(metrics, "legacy")
        self._label_for = label_for or (lambda frame: "unknown")
        self.listener: BroadcastListener | None = None
        self._connections: dict[str, LegacyConnection] = {}
        # (scope, target id) -> the connections following it
        self._followers: dict[tuple[Scope, TargetId], set[LegacyConnection]] = {}

    def set_listener(self, listener: BroadcastListener | None, label_for: Callable[[Frame], str] | None = None) -> None:
        """`listener` observes connections and intercepts broadcasts; `label_for` names the event
        type of a frame the old way delivers (its metrics label)."""
        self.listener = listener
        if label_for is not None:
            self._label_for = label_for

    # -- the old API -----------------------------------------------------------------------------

    def connect(self, outbox: LegacyOutbox, *, kind: str, user_id: str | None = None) -> str:
        client_id = f"l{_PROCESS_TAG}-{next(_ids)}"
        connection = LegacyConnection(client_id=client_id, kind=kind, outbox=outbox, user_id=user_id)
        if self.listener:  # first: a listener that refuses the socket leaves nothing registered
            self.listener.connected(connection)
        self._connections[client_id] = connection
        if self.metrics:
            self.metrics.connections.labels(kind).inc()
            self.metrics.connections_opened.labels(kind).inc()
        return client_id

    def disconnect(self, client_id: str) -> None:
        connection = self._connections.pop(client_id, None)
        if connection is None:
            return
        for key in connection.follows:
            members = self._followers.get(key)
            if members is not None:
                members.discard(connection)
                if not members:
                    del self._followers[key]
        if self.metrics:
            self.metrics.connections.labels(connection.kind).dec()
            self.metrics.subscriptions.labels(connection.kind).dec(len(connection.follows))
        if self.listener:
            self.listener.disconnected(connection)

    def follow(self, client_id: str, scope: Scope, target_id: TargetId) -> None:
        """From now on the socket receives what is broadcast to (`scope`, `target_id`)."""
        connection = self._connections.get(client_id)
        if connection is None or scope == GLOBAL:
            return
        key = (scope, target_id)
        if key in connection.follows:
            return
        connection.follows.add(key)
        self._followers.setdefault(key, set()).add(connection)
        if self.metrics:
            self.metrics.subscriptions.labels(connection.kind).inc()
        if self.listener:
            self.listener.subscribed(connection, scope, target_id)

    async def broadcast(self, scope: Scope, target_id: TargetId, message: Frame) -> None:
        """Send `message` to every socket following (`scope`, `target_id`)."""
        await self._broadcast(Broadcast(scope, target_id, message))

    async def broadcast_global(self, message: Frame) -> None:
        """Send `message` to every legacy socket."""
        await self._broadcast(Broadcast(GLOBAL, None, message))

    async def _broadcast(self, broadcast: Broadcast) -> None:
        if self.listener is not None and await self.listener.intercept(broadcast):
            return
        self.deliver(broadcast, self._label_for(broadcast.message))

    # -- delivery --------------------------------------------------------------------------------

    def recipients(self, scope: Scope, target_id: TargetId | None) -> list[LegacyConnection]:
        """The connections a broadcast to (`scope`, `target_id`) reaches."""
        return list(self.followers(scope, target_id))

    def followers(self, scope: Scope, target_id: TargetId | None) -> Collection[LegacyConnection]:
        """Like `recipients`, without a copy: for a synchronous fan-out that does not subscribe or
        disconnect anyone while it iterates."""
        if scope == GLOBAL:
            return self._connections.values()
        assert target_id is not None
        return self._followers.get((scope, target_id), ())

    def deliver(self, broadcast: Broadcast, event_type_label: str, ingress_ns: int | None = None) -> int:
        """Send a broadcast's frame to its recipients the old way; returns how many were queued."""
        targets = self.recipients(broadcast.scope, broadcast.target_id)
        return self.send_frames(targets, encode(broadcast.message), event_type_label, ingress_ns)

    def send_frames(
        self, targets: Collection[LegacyConnection], frame: str | PreEncoded, event_type_label: str,
        ingress_ns: int | None = None,
    ) -> int:
        """Queue `frame` on each target, accounted on the legacy path as one event."""
        ticket = self.ledger.open(event_type_label, ingress_ns or time.perf_counter_ns(), len(targets))
        for connection in targets:
            connection.outbox.put(frame, ticket)
        return len(targets)

    def reply(self, client_id: str, frame: Frame) -> None:
        """A direct answer to one socket (history, pong, error): not a broadcast, not accounted."""
        connection = self._connections.get(client_id)
        if connection is not None:
            connection.outbox.put(encode(frame))

    def follows_of(self, client_id: str) -> frozenset[tuple[Scope, TargetId]]:
        """The (scope, target) pairs a socket follows (none once it closed)."""
        connection = self._connections.get(client_id)
        return frozenset(connection.follows) if connection is not None else frozenset()

    def get(self, client_id: str) -> LegacyConnection | None:
        return self._connections.get(client_id)

    def connections(self) -> Iterable[LegacyConnection]:
        return self._connections.values()

    @property
    def connection_count(self) -> int:
        return len(self._connections)
