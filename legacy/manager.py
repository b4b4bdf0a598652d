"""`LegacyConnectionManager`: the old per-view connection manager, behaviour kept.

Its public methods are the ones the old application called (`connect`, `disconnect`,
`subscribe_to_thread`, `subscribe_to_agent`, `broadcast_to_thread`, `broadcast_to_agent`,
`broadcast_global`), with the same meaning: a socket follows the threads and agents it was
subscribed to until it closes; there is no unsubscribe.

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
from typing import Literal, Protocol

from wsmigrate.legacy.frames import Frame, encode
from wsmigrate.metrics.ledger import DeliveryTicket, PathLedger
from wsmigrate.metrics.registry import WsMetrics

log = logging.getLogger(__name__)

LEGACY_THREAD = "legacy_thread"
LEGACY_AGENT = "legacy_agent"
Scope = Literal["thread", "agent", "global"]
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
    threads: set[int] = field(default_factory=set)
    agents: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Broadcast:
    """One call of a broadcast method: where it goes and the frame the old code built."""

    scope: Scope
    target_id: int | None
    message: Frame


class BroadcastListener(Protocol):
    """Observes the legacy manager; implemented by a bridge."""

    async def intercept(self, broadcast: Broadcast) -> bool:
        """True when the listener took over delivering `broadcast`; False to deliver it the old way."""

    def connected(self, connection: LegacyConnection) -> None: ...

    def subscribed(self, connection: LegacyConnection, scope: Scope, target_id: int) -> None: ...

    def disconnected(self, connection: LegacyConnection) -> None: ...


class LegacyConnectionManager:
    """Legacy sockets and their thread and agent subscriptions."""

    def __init__(self, *, metrics: WsMetrics | None = None, label_for: Callable[[Frame], str] | None = None) -> None:
        self.metrics = metrics
        self.ledger = PathLedger(metrics, "legacy")
        self._label_for = label_for or (lambda frame: "unknown")
        self.listener: BroadcastListener | None = None
        self._connections: dict[str, LegacyConnection] = {}
        # thread or agent id -> the connections following it
        self._threads: dict[int, set[LegacyConnection]] = {}
        self._agents: dict[int, set[LegacyConnection]] = {}

    def set_listener(self, listener: BroadcastListener | None) -> None:
        self.listener = listener

    # -- the old API -----------------------------------------------------------------------------

    def connect(self, outbox: LegacyOutbox, *, kind: str, user_id: str | None = None) -> str:
        client_id = f"l{_PROCESS_TAG}-{next(_ids)}"
        connection = LegacyConnection(client_id=client_id, kind=kind, outbox=outbox, user_id=user_id)
        self._connections[client_id] = connection
        if self.metrics:
            self.metrics.connections.labels(kind).inc()
            self.metrics.connections_opened.labels(kind).inc()
        if self.listener:
            self.listener.connected(connection)
        return client_id

    def disconnect(self, client_id: str) -> None:
        connection = self._connections.pop(client_id, None)
        if connection is None:
            return
        for thread_id in connection.threads:
            self._forget(self._threads, thread_id, connection)
        for agent_id in connection.agents:
            self._forget(self._agents, agent_id, connection)
        if self.metrics:
            self.metrics.connections.labels(connection.kind).dec()
            self.metrics.subscriptions.labels(connection.kind).dec(len(connection.threads) + len(connection.agents))
        if self.listener:
            self.listener.disconnected(connection)

    @staticmethod
    def _forget(index: dict[int, set[LegacyConnection]], key: int, connection: LegacyConnection) -> None:
        members = index.get(key)
        if members is not None:
            members.discard(connection)
            if not members:
                del index[key]

    def subscribe_to_thread(self, client_id: str, thread_id: int) -> None:
        self._subscribe(client_id, "thread", thread_id)

    def subscribe_to_agent(self, client_id: str, agent_id: int) -> None:
        self._subscribe(client_id, "agent", agent_id)

    def _subscribe(self, client_id: str, scope: Scope, target_id: int) -> None:
        connection = self._connections.get(client_id)
        if connection is None:
            return
        owned, index = (connection.threads, self._threads) if scope == "thread" else (connection.agents, self._agents)
        if target_id in owned:
            return
        owned.add(target_id)
        index.setdefault(target_id, set()).add(connection)
        if self.metrics:
            self.metrics.subscriptions.labels(connection.kind).inc()
        if self.listener:
            self.listener.subscribed(connection, scope, target_id)

    async def broadcast_to_thread(self, thread_id: int, message: Frame) -> None:
        await self._broadcast(Broadcast("thread", thread_id, message))

    async def broadcast_to_agent(self, agent_id: int, message: Frame) -> None:
        await self._broadcast(Broadcast("agent", agent_id, message))

    async def broadcast_global(self, message: Frame) -> None:
        await self._broadcast(Broadcast("global", None, message))

    async def _broadcast(self, broadcast: Broadcast) -> None:
        if self.listener is not None and await self.listener.intercept(broadcast):
            return
        self.deliver(broadcast, self._label_for(broadcast.message))

    # -- delivery --------------------------------------------------------------------------------

    def recipients(self, scope: Scope, target_id: int | None) -> list[LegacyConnection]:
        """The connections a broadcast to (`scope`, `target_id`) reaches."""
        return list(self.followers(scope, target_id))

    def followers(self, scope: Scope, target_id: int | None) -> Collection[LegacyConnection]:
        """Like `recipients`, without a copy: for a synchronous fan-out that does not subscribe or
        disconnect anyone while it iterates."""
        if scope == "global":
            return self._connections.values()
        index = self._threads if scope == "thread" else self._agents
        assert target_id is not None
        return index.get(target_id, ())

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

    def get(self, client_id: str) -> LegacyConnection | None:
        return self._connections.get(client_id)

    def connections(self) -> Iterable[LegacyConnection]:
        return self._connections.values()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def subscription_count(self) -> int:
        return sum(len(m) for m in self._threads.values()) + sum(len(m) for m in self._agents.values())
