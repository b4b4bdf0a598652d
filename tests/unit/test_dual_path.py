"""The dual-path `DualPath` without sockets or a server: every frame lands in an in-memory outbox.

Each test builds the real components (in-memory bus, unified and legacy managers, flag store,
translation table) around a `DualPath`, connects legacy and unified clients whose outboxes record
what is put on them, and asserts what each client received and which path wrote it. The in-memory
bus dispatches to its sinks inside `publish`, so every frame is in its outbox when `publish` (or a
legacy `broadcast`) returns: no sleeps, milliseconds per test.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from examples.chat.declaration import ChatEvent, chat_catalog, chat_translations
from wsmigrate.bridge.dual_path import DualPath
from wsmigrate.bridge.errors import BridgeError
from wsmigrate.bridge.flags import FlagChange, MemoryFlagStore, apply_change
from wsmigrate.bridge.stages import FlagsDocument, Stage, cohort_bucket
from wsmigrate.bridge.translation import TranslationTable, flat, legacy_only, nested
from wsmigrate.legacy.frames import Frame, encode
from wsmigrate.legacy.manager import GLOBAL, LegacyConnectionManager, PreEncoded, TargetId
from wsmigrate.metrics import WsMetrics
from wsmigrate.metrics.ledger import DeliveryTicket
from wsmigrate.metrics.registry import UNDECLARED_FRAME
from wsmigrate.unified import ConnectionManager, Event, EventBus, EventCatalog, MemoryBackend, Publication
from wsmigrate.unified.errors import BusClosedError
from wsmigrate.unified.outbox import DEFAULT_OUTBOX_CAPACITY, Outbox, OutFrame
from wsmigrate.unified.publication import Ingress

STAGES = [stage.value for stage in Stage]
ORIGINS = ["legacy_call", "bus"]
LEGACY_SERVES = {"off": True, "shadow": True, "live": False, "complete": False}
COMPARED = {"off": False, "shadow": True, "live": True, "complete": False}
UNKNOWN = "unknown"

BOARD = "6f1c2a9e-0d3b-4c57-9a8e-1f2b3c4d5e6f"
OTHER_BOARD = "0b7e1d2c-3a4f-4e5d-8c6b-7a8f9e0d1c2b"
CARD = "c4a1e5b2-9d8f-4a3c-b7e6-5f4d3c2b1a09"


# -- an outbox that keeps what it is given ---------------------------------------------------------


class MemoryOutbox(Outbox):
    """A socket's outbox that records every frame put on it and never touches a socket.

    A frame counts as written the moment it is put: its delivery ticket is settled as `sent` at
    once (as `AsgiOutbox` does after its send), so the ledgers' accepted = completed + inflight
    holds. `writers` records, per frame, which path's ledger opened its ticket (None: no ticket).
    """

    __slots__ = ("closes", "frames", "writers")

    def __init__(self, *, capacity: int = DEFAULT_OUTBOX_CAPACITY) -> None:
        super().__init__(self._close_socket, capacity=capacity)
        self.frames: list[str] = []
        self.writers: list[str | None] = []
        self.closes: list[tuple[int, str]] = []

    async def _close_socket(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def put(self, frame: OutFrame, ticket: DeliveryTicket | None = None) -> bool:
        if self.closed or self._close_after is not None:
            return self._refuse(ticket)
        self.frames.append(frame if isinstance(frame, str) else frame.text)
        self.writers.append(ticket.ledger.path if ticket is not None else None)
        if ticket is not None:
            ticket.done("sent")
        return True

    def __len__(self) -> int:
        return 0  # nothing is ever left queued

    def _busy(self) -> bool:
        return False

    def _begin(self) -> None:
        return None

    def _request_close(self) -> None:
        assert self._close_after is not None
        self.shutdown(*self._close_after)  # nothing queued: the close happens now

    def _drop_queued(self) -> list[DeliveryTicket | None]:
        return []

    def _stop_writer(self) -> asyncio.Task[None] | None:
        return None

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.frames]


# -- a delivery observer that keeps what it is told --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    event_id: str
    event_type: str
    path: str
    recipient: str
    payload: str
    sent: bool


@dataclass
class RecordingObserver:
    """The comparator's seat: each path reports what it sent or would have sent to each legacy socket."""

    seen: list[Observation] = field(default_factory=list)

    def observe(self, publication: Publication, path: str, recipient: str, payload: str, sent: bool) -> None:
        self.seen.append(Observation(publication.event.event_id, publication.event_type, path, recipient,
                                     payload, sent))


# -- two declarations: a domain-free one of our own, and the chat example's -----------------------------


def boards_declaration() -> tuple[EventCatalog, TranslationTable]:
    """A small app unlike the chat one: UUID ids, a nested multi-topic type, a global type, a legacy-only frame."""
    catalog = EventCatalog(topics=["board:{board_id:uuid}", "card:{card_id:uuid}", "announcements"])
    catalog.event("card_moved", topics=["board:{board_id}"])
    catalog.event("card_added", topics=["board:{board_id}", "card:{id}"])
    catalog.event("notice", topics=["announcements"])
    table = TranslationTable(scopes={"board": "board:{id}"}, global_topic="announcements")
    table.add(flat("card_moved", scope="board", target="board_id"))
    table.add(nested("card_added", "card_added", key="card", scope="board", target="board_id", outer=("board_id",)))
    table.add(flat("notice", scope=GLOBAL))
    table.add(legacy_only("typing", scope="board"))
    return catalog, table


Declare = Callable[[], tuple[EventCatalog, TranslationTable]]


def chat_declaration() -> tuple[EventCatalog, TranslationTable]:
    return chat_catalog(), chat_translations()


@dataclass
class Rig:
    """The components a server wires together, minus the server."""

    catalog: EventCatalog
    translations: TranslationTable
    registry: CollectorRegistry
    metrics: WsMetrics
    bus: EventBus
    unified: ConnectionManager
    legacy: LegacyConnectionManager
    flags: MemoryFlagStore
    observer: RecordingObserver
    bridge: DualPath

    async def set_stage(self, event_type: str, stage: str) -> None:
        await self.flags.apply(FlagChange(kind="stage", event_type=event_type, stage=Stage(stage), force=True), "test")

    def legacy_client(self, scope: str, target: TargetId | None, *, user_id: str | None = None,
                      kind: str = "legacy_view") -> tuple[str, MemoryOutbox]:
        """A legacy socket following (`scope`, `target`) (or only connected, for `global`)."""
        outbox = MemoryOutbox()
        client_id = self.legacy.connect(outbox, kind=kind, user_id=user_id)
        outbox.start()
        if scope != GLOBAL:
            assert target is not None
            self.legacy.follow(client_id, scope, target)
        return client_id, outbox

    async def unified_client(self, topic: str, *, user_id: str | None = None) -> MemoryOutbox:
        """A native unified connection subscribed to `topic` (its ack is checked and dropped)."""
        outbox = MemoryOutbox()
        outbox.start()
        connection = self.unified.add(outbox, user_id=user_id)
        await self.unified.subscribe(connection, [topic])
        ack = json.loads(outbox.frames.pop(0))
        outbox.writers.pop(0)
        assert (ack["type"], ack["topics"]) == ("subscribed", [topic])
        return outbox

    def read_metrics(self) -> Samples:
        """Every sample of the registry now (one collection, after publishing the pending tallies)."""
        self.metrics.batch.flush()
        return Samples({(s.name, frozenset(s.labels.items())): s.value
                        for metric in self.registry.collect() for s in metric.samples})

    def assert_ledgers_balance(self) -> None:
        """Every event a path accepted is completed and none is left in flight (the outboxes settle)."""
        now = self.read_metrics()
        accepted_somewhere = 0.0
        for event_type in (*self.catalog.names, UNKNOWN):
            for path in ("legacy", "unified"):
                labels = {"event_type": event_type, "path": path}
                accepted = now.get("wsmigrate_path_events_accepted_total", **labels)
                completed = sum(now.get("wsmigrate_path_events_completed_total", **labels, outcome=o)
                                for o in ("delivered", "no_recipients", "failed", "dropped"))
                assert now.get("wsmigrate_path_events_inflight", **labels) == 0, labels
                assert accepted == completed, labels
                accepted_somewhere += accepted
        assert accepted_somewhere > 0  # the check looked at the right series


@dataclass(frozen=True)
class Samples:
    """One reading of the registry."""

    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def get(self, name: str, **labels: str) -> float:
        return self.values.get((name, frozenset(labels.items())), 0.0)

    def deliveries(self, event_type: str, path: str, outcome: str) -> float:
        return self.get("wsmigrate_recipient_deliveries_total", event_type=event_type, path=path, outcome=outcome)

    def bridge_events(self, event_type: str, outcome: str) -> float:
        return self.get("wsmigrate_bridge_events_total", event_type=event_type, outcome=outcome)

    def published(self) -> float:
        """Events published on the bus, of any type and origin."""
        return sum(v for (name, _), v in self.values.items() if name == "wsmigrate_events_published_total")


def build(declare: Declare = boards_declaration, *, backend: MemoryBackend | None = None,
          flags: MemoryFlagStore | None = None,
          before_bridge: Callable[[Publication], None] | None = None) -> Rig:
    """Wire the components as the server's `Runtime` does (one `WsMetrics` for all of them).

    `before_bridge`: a bus sink that runs after the unified manager's and before the bridge's.
    """
    catalog, translations = declare()
    registry = CollectorRegistry()
    metrics = WsMetrics(registry, event_types=[*catalog.names, UNKNOWN], connection_kinds=["legacy_view"],
                        legacy_only_frames=translations.legacy_only_frames)
    bus = EventBus(backend, catalog=catalog, metrics=metrics)
    unified = ConnectionManager(bus, metrics=metrics)
    legacy = LegacyConnectionManager(metrics=metrics)
    store = flags or MemoryFlagStore()
    observer = RecordingObserver()
    if before_bridge is not None:
        bus.attach(before_bridge)
    bridge = DualPath(bus, unified, legacy, store, translations, metrics=metrics, observer=observer)
    bridge.install()
    return Rig(catalog, translations, registry, metrics, bus, unified, legacy, store, observer, bridge)


MakeRig = Callable[..., Rig]


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    """`build`, with every bus it built stopped after the test (started or not)."""
    built: list[Rig] = []

    def make(*args: Any, **kwargs: Any) -> Rig:
        built.append(build(*args, **kwargs))
        return built[-1]

    yield make
    for each in built:
        await each.bus.stop()


@pytest.fixture
async def rig(make_rig: MakeRig) -> Rig:
    """The boards declaration, bus started."""
    built = make_rig()
    await built.bus.start()
    return built


# -- the cases of the matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One event type: the frame the old code broadcast, where to, and the topic a unified client follows."""

    id: str
    declare: Declare
    scope: str
    target: TargetId | None
    frame: Frame
    topic: str
    legacy_elsewhere: tuple[tuple[str, TargetId], ...]  # what legacy bystanders follow (none for `global`)
    unified_elsewhere: tuple[str, ...]  # what unified bystanders subscribe to
    user_id: str | None = None  # of both clients (an event with an audience reaches that user only)


CASES = [
    Case("boards-flat", boards_declaration, "board", BOARD,
         {"type": "card_moved", "board_id": BOARD, "card_id": CARD, "column": "done"},
         f"board:{BOARD}", (("board", OTHER_BOARD),), (f"board:{OTHER_BOARD}",)),
    Case("boards-nested-two-topics", boards_declaration, "board", BOARD,
         {"type": "card_added", "board_id": BOARD, "card": {"id": CARD, "board_id": BOARD, "title": "x"}},
         f"card:{CARD}", (("board", OTHER_BOARD),), (f"board:{OTHER_BOARD}",)),
    Case("boards-global", boards_declaration, GLOBAL, None, {"type": "notice", "text": "maintenance at 6"},
         "announcements", (), (f"board:{OTHER_BOARD}",)),
    Case("chat-nested", chat_declaration, "thread", 45,
         {"type": "thread_message", "thread_id": 45, "message": {"id": 1, "thread_id": 45, "role": "user",
                                                                   "content": "hi"}},
         "thread:45", (("thread", 46), ("agent", 45)), ("thread:46", "agent:45")),
    # on `thread:45` and `agent:7`, but the old app sent it to the agent's sockets only: a legacy socket
    # following thread 45 must get nothing, even though its compat connection is on one of the topics
    Case("chat-thread-event-two-topics", chat_declaration, "agent", 7,
         {"type": "thread_updated", "id": 45, "agent_id": 7, "title": "renamed"},
         "thread:45", (("thread", 45), ("agent", 8)), ("thread:46", "agent:8")),
    Case("chat-audience-two-topics", chat_declaration, "agent", 7,
         {"type": "agent_updated", "id": 7, "owner_id": "u1", "name": "renamed", "status": "idle"},
         "agents", (("agent", 8),), ("agent:8",), user_id="u1"),
]


async def send(rig: Rig, origin: str, case: Case) -> tuple[str, dict[str, Any]]:
    """Let one event enter at `origin`; returns its event type and data."""
    translated = rig.translations.to_event(case.frame)
    assert translated is not None
    event_type, data = translated
    if origin == "legacy_call":
        if case.scope == GLOBAL:
            await rig.legacy.broadcast_global(case.frame)
        else:
            assert case.target is not None
            await rig.legacy.broadcast(case.scope, case.target, case.frame)
    else:
        assert await rig.bus.publish(rig.catalog.create(event_type, data))
    return event_type, data


def assert_envelope(frame: dict[str, Any], event_type: str, data: dict[str, Any], topic: str) -> None:
    assert (frame["type"], frame["topic"], frame["data"]) == (event_type, topic, data)
    assert frame["seq"] >= 1
    assert frame["event_id"]


# -- 1 + 2: every stage, both origins, both client kinds ----------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("stage", STAGES)
async def test_each_subscribed_client_gets_the_event_once_in_its_own_shape(make_rig: MakeRig, stage: str,
                                                                           origin: str, case: Case) -> None:
    """Catches a duplicate or lost frame in any stage/origin, a reshaped legacy frame, a wrong
    envelope, a leak to bystanders, the wrong path writing the legacy socket, and unsettled tickets."""
    rig = make_rig(case.declare)
    await rig.bus.start()
    event_type = rig.translations.for_frame(case.frame).event_type  # type: ignore[union-attr]
    assert event_type is not None
    await rig.set_stage(event_type, stage)
    _, legacy_out = rig.legacy_client(case.scope, case.target, user_id=case.user_id)
    unified_out = await rig.unified_client(case.topic, user_id=case.user_id)
    bystanders = [await rig.unified_client(topic, user_id=case.user_id) for topic in case.unified_elsewhere]
    bystanders += [rig.legacy_client(scope, target, user_id=case.user_id)[1] for scope, target in case.legacy_elsewhere]

    _, data = await send(rig, origin, case)

    assert legacy_out.frames == [encode(case.frame)]  # byte for byte what the old code would have sent
    assert rig.translations.legacy_frame(event_type, data) == case.frame
    assert len(unified_out.frames) == 1
    assert_envelope(unified_out.parsed()[0], event_type, data, case.topic)
    assert [b.frames for b in bystanders] == [[] for _ in bystanders]

    legacy_serves = LEGACY_SERVES[stage]
    assert legacy_out.writers == ["legacy" if legacy_serves else "unified"]
    assert unified_out.writers == ["unified"]
    now = rig.read_metrics()
    assert now.deliveries(event_type, "legacy", "sent") == (1 if legacy_serves else 0)
    assert now.deliveries(event_type, "unified", "sent") == (1 if legacy_serves else 2)
    assert now.deliveries(event_type, "unified", "shadow") == (1 if stage == "shadow" else 0)
    assert now.deliveries(event_type, "legacy", "shadow") == (1 if stage == "live" else 0)
    assert now.get("wsmigrate_events_published_total", event_type=event_type, origin=origin) == 1
    assert now.bridge_events(event_type, "mirrored") == (1 if origin == "legacy_call" else 0)
    rig.assert_ledgers_balance()


# -- 3: comparisons ------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("stage", STAGES)
async def test_compared_stages_report_one_sent_and_one_computed_frame_per_legacy_recipient(
    rig: Rig, stage: str, origin: str
) -> None:
    """Catches a missing, doubled or wrongly flagged observation, a payload that is not the legacy
    frame, observations of unified clients or bystanders, and comparisons in off/complete."""
    case = CASES[0]
    await rig.set_stage("card_moved", stage)
    recipients = [rig.legacy_client("board", BOARD)[0] for _ in range(2)]
    rig.legacy_client("board", OTHER_BOARD)
    await rig.unified_client(f"board:{BOARD}")

    await send(rig, origin, case)

    seen = rig.observer.seen
    if not COMPARED[stage]:
        assert seen == []
        return
    serving = "legacy" if LEGACY_SERVES[stage] else "unified"
    assert len({o.event_id for o in seen}) == 1
    assert {o.payload for o in seen} == {encode(case.frame)}
    assert {o.event_type for o in seen} == {"card_moved"}
    assert sorted((o.recipient, o.path, o.sent) for o in seen) == sorted(
        (r, path, path == serving) for r in recipients for path in ("legacy", "unified"))


# -- 4: a sticky cohort --------------------------------------------------------------------------------


def user_in_bucket(accept: Callable[[int], bool]) -> str:
    return next(u for u in (f"user-{i}" for i in range(10_000)) if accept(cohort_bucket(u)))


@pytest.mark.parametrize("percent", [1, 37, 99])
async def test_a_shadow_cohort_is_served_by_the_unified_path_and_the_rest_by_the_legacy_path(
    rig: Rig, percent: int
) -> None:
    """Catches the cohort ignored or inverted (wrong writer), a cohort socket served twice or not at
    all, and comparisons missing for either half of the cohort."""
    await rig.set_stage("card_moved", "shadow")
    await rig.flags.apply(FlagChange(kind="percent", event_type="card_moved", live_percent=percent), "test")
    inside, outside = user_in_bucket(lambda b: b < percent), user_in_bucket(lambda b: b >= percent)
    in_id, in_out = rig.legacy_client("board", BOARD, user_id=inside)
    out_id, out_out = rig.legacy_client("board", BOARD, user_id=outside)
    unified_out = await rig.unified_client(f"board:{BOARD}")

    for origin in ORIGINS:
        await send(rig, origin, CASES[0])

    frame = encode(CASES[0].frame)
    assert in_out.frames == [frame, frame]
    assert out_out.frames == [frame, frame]
    assert in_out.writers == ["unified", "unified"]
    assert out_out.writers == ["legacy", "legacy"]
    assert len(unified_out.frames) == 2
    assert Counter((o.recipient, o.path, o.sent) for o in rig.observer.seen) == {
        (in_id, "unified", True): 2, (in_id, "legacy", False): 2,
        (out_id, "legacy", True): 2, (out_id, "unified", False): 2,
    }
    rig.assert_ledgers_balance()


class TargetingFlagStore(MemoryFlagStore):
    """A flag store whose flag system picks the live cohort by user (the `TargetedCohorts` seam)."""

    def __init__(self) -> None:
        super().__init__()
        self.live_users: set[str] = set()
        self._cohort_listeners: list[Callable[[], None]] = []

    def in_live_cohort(self, event_type: str, identity: str, kind: str) -> bool:
        return identity in self.live_users

    def add_cohort_listener(self, listener: Callable[[], None]) -> None:
        self._cohort_listeners.append(listener)

    def targeting_changed(self) -> None:
        for listener in self._cohort_listeners:
            listener()


async def test_a_cohort_the_flag_system_picks_is_served_live_and_moves_only_between_events(make_rig: MakeRig) -> None:
    """Catches the provider's cohort ignored (everyone legacy), applied outside `shadow`, a socket
    served twice or not at all when its cohort changes, and a membership never re-read."""
    store = TargetingFlagStore()
    rig = make_rig(flags=store)
    await rig.bus.start()
    await rig.set_stage("card_moved", "shadow")
    store.live_users = {"picked"}
    picked_id, picked = rig.legacy_client("board", BOARD, user_id="picked")
    other_id, other = rig.legacy_client("board", BOARD, user_id="other")
    for origin in ORIGINS:
        await send(rig, origin, CASES[0])
    assert (picked.writers, other.writers) == (["unified", "unified"], ["legacy", "legacy"])
    assert Counter((o.recipient, o.path, o.sent) for o in rig.observer.seen) == {
        (picked_id, "unified", True): 2, (picked_id, "legacy", False): 2,
        (other_id, "legacy", True): 2, (other_id, "unified", False): 2,
    }

    store.live_users = {"other"}  # the provider's targeting changed; it announces it
    await send(rig, "bus", CASES[0])
    assert (picked.writers[-1], other.writers[-1]) == ("unified", "legacy")  # not re-read yet: unchanged
    store.targeting_changed()
    await send(rig, "bus", CASES[0])
    assert (picked.writers[-1], other.writers[-1]) == ("legacy", "unified")

    await rig.set_stage("card_moved", "off")  # a cohort only exists in shadow
    await send(rig, "bus", CASES[0])
    assert (picked.writers[-1], other.writers[-1]) == ("legacy", "legacy")
    frame = encode(CASES[0].frame)
    assert picked.frames == other.frames == [frame] * 5
    rig.assert_ledgers_balance()


# -- 5: flag changes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), [(a, b) for a in STAGES for b in STAGES if a != b])
async def test_the_stage_read_at_ingress_decides_across_a_flag_change(rig: Rig, before: str, after: str) -> None:
    """Catches a stale stamp cache (the second event served under the old stage) and any loss or
    duplicate around a change, in either direction."""
    await rig.set_stage("card_moved", before)
    _, legacy_out = rig.legacy_client("board", BOARD)
    unified_out = await rig.unified_client(f"board:{BOARD}")
    first = {"type": "card_moved", "board_id": BOARD, "card_id": CARD, "column": "doing"}
    second = {**first, "column": "done"}

    await rig.legacy.broadcast("board", BOARD, first)
    await rig.set_stage("card_moved", after)
    await rig.bus.publish(rig.catalog.create("card_moved", {k: v for k, v in second.items() if k != "type"}))

    assert legacy_out.frames == [encode(first), encode(second)]
    assert legacy_out.writers == ["legacy" if LEGACY_SERVES[s] else "unified" for s in (before, after)]
    assert [f["data"]["column"] for f in unified_out.parsed()] == ["doing", "done"]


class SwitchableFlags(MemoryFlagStore):
    """A flag store that a bus sink can switch synchronously, in the middle of a dispatch."""

    def __init__(self) -> None:
        super().__init__()
        self.forced: FlagsDocument | None = None

    def current(self) -> FlagsDocument:
        return self.forced if self.forced is not None else super().current()


@pytest.mark.parametrize(("before", "after"), [("off", "complete"), ("complete", "off"), ("shadow", "live"),
                                               ("live", "shadow")])
async def test_a_flag_change_during_a_dispatch_does_not_change_who_serves_that_event(make_rig: MakeRig, before: str,
                                                                                     after: str) -> None:
    """The flags flip after the unified manager routed an event and before the bridge's legacy path
    does: catches a legacy path that re-reads the flags instead of the stamp (lost or doubled frame)."""
    flags = SwitchableFlags()
    flips: list[str] = []

    def flip(publication: Publication) -> None:
        if not flips:
            flips.append(publication.event.event_id)
            change = FlagChange(kind="stage", event_type="card_moved", stage=Stage(after), force=True)
            flags.forced = apply_change(flags.current(), change)

    rig = make_rig(flags=flags, before_bridge=flip)
    await rig.bus.start()
    await rig.set_stage("card_moved", before)
    _, legacy_out = rig.legacy_client("board", BOARD)
    unified_out = await rig.unified_client(f"board:{BOARD}")

    await send(rig, "legacy_call", CASES[0])
    await send(rig, "bus", CASES[0])

    assert flips
    assert legacy_out.frames == [encode(CASES[0].frame)] * 2
    assert legacy_out.writers == ["legacy" if LEGACY_SERVES[s] else "unified" for s in (before, after)]
    assert len(unified_out.frames) == 2


# -- 6: legacy frames with no event type -------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(("frame", "frame_label"), [
    ({"type": "typing", "board_id": BOARD, "user": "bob"}, "typing"),
    ({"type": "cursor_moved", "board_id": BOARD, "x": 3, "y": 4}, UNDECLARED_FRAME),
], ids=["legacy_only", "undeclared"])
async def test_a_frame_without_an_event_type_goes_the_old_way_only_and_is_counted(
    rig: Rig, stage: str, frame: Frame, frame_label: str
) -> None:
    """Catches such a frame dropped, mirrored onto the bus, shown to unified clients, or not counted,
    whatever the default stage."""
    await rig.flags.apply(FlagChange(kind="default", stage=Stage(stage)), "test")
    _, follower = rig.legacy_client("board", BOARD)
    _, bystander = rig.legacy_client("board", OTHER_BOARD)
    unified_out = await rig.unified_client(f"board:{BOARD}")

    await rig.legacy.broadcast("board", BOARD, frame)

    assert follower.frames == [encode(frame)]
    assert follower.writers == ["legacy"]
    assert bystander.frames == []
    assert unified_out.frames == []
    now = rig.read_metrics()
    assert now.bridge_events(UNKNOWN, "skipped") == 1
    assert now.get("wsmigrate_legacy_only_broadcasts_total", frame_type=frame_label) == 1
    assert now.deliveries(UNKNOWN, "legacy", "sent") == 1
    assert now.published() == 0
    assert rig.observer.seen == []


# -- 7: a mirror that fails ------------------------------------------------------------------------------


class FailingBackend(MemoryBackend):
    """A bus backend whose network is down."""

    async def append(self, event: Event, topics: Sequence[str], ingress: Ingress) -> bool:
        raise ConnectionError("bus unreachable")


class BuggyBackend(MemoryBackend):
    """A bus backend with a bug: an exception of no kind wsmigrate expects."""

    async def append(self, event: Event, topics: Sequence[str], ingress: Ingress) -> bool:
        raise RuntimeError("unexpected")


@pytest.mark.parametrize("stage", ["off", "live"])
@pytest.mark.parametrize("failure", ["not_started", "stopped", "backend_down", "backend_bug", "bad_data"])
async def test_a_failed_mirror_never_raises_and_delivers_the_old_way(make_rig: MakeRig, stage: str,
                                                                    failure: str) -> None:
    """Catches an exception escaping `broadcast`, a frame dropped (or doubled) when the bus refuses
    it, and a failure not counted as `error` (or counted as mirrored)."""
    backends = {"backend_down": FailingBackend, "backend_bug": BuggyBackend}
    rig = make_rig(backend=backends[failure]() if failure in backends else None)
    if failure != "not_started":
        await rig.bus.start()
    await rig.set_stage("card_moved", stage)
    target = "not-a-uuid" if failure == "bad_data" else BOARD  # the catalogue cannot route it: RoutingError
    frame = {"type": "card_moved", "board_id": target, "card_id": CARD, "column": "done"}
    _, legacy_out = rig.legacy_client("board", target)
    unified_out = MemoryOutbox()
    rig.unified.attach(rig.unified.add(unified_out), [f"board:{BOARD}"])
    if failure == "stopped":
        await rig.bus.stop()

    await rig.legacy.broadcast("board", target, frame)  # must not raise

    assert legacy_out.frames == [encode(frame)]
    assert legacy_out.writers == ["legacy"]
    assert unified_out.frames == []
    now = rig.read_metrics()
    assert now.bridge_events("card_moved", "error") == 1
    assert now.bridge_events("card_moved", "mirrored") == 0
    assert now.published() == 0
    # the fallback delivery is accounted on the legacy path, under the frame's event type
    assert now.deliveries("card_moved", "legacy", "sent") == 1
    assert now.deliveries(UNKNOWN, "legacy", "sent") == 0


async def test_publishing_on_a_bus_that_is_not_running_raises_bus_closed(make_rig: MakeRig) -> None:
    """The failure the previous test relies on for `not_started`/`stopped` is the one `intercept` catches."""
    rig = make_rig()
    with pytest.raises(BusClosedError):
        await rig.bus.publish(rig.catalog.create("card_moved", {"board_id": BOARD}))


# -- the shared-outbox rule ---------------------------------------------------------------------------------


class PlainLegacyOutbox:
    """A legacy socket transport that is not a `unified.outbox.Outbox`."""

    closed = False

    def put(self, frame: str | PreEncoded, ticket: DeliveryTicket | None = None) -> bool:
        return True

    def start(self) -> None:
        return None

    def shutdown(self, code: int, reason: str) -> None:
        return None

    def close_after_flush(self, code: int, reason: str) -> None:
        return None

    async def finish(self, timeout: float) -> None:
        return None


async def test_a_legacy_socket_must_share_the_unified_outbox(rig: Rig) -> None:
    """Catches the bridge accepting a socket whose frames the two paths could not order on one queue."""
    with pytest.raises(BridgeError, match=r"unified\.outbox\.Outbox"):
        rig.legacy.connect(PlainLegacyOutbox(), kind="legacy_view")
    assert rig.legacy.connection_count == 0  # refused: nothing left half-registered
    assert rig.read_metrics().get("wsmigrate_connections", kind="legacy_view") == 0
    client_id, _ = rig.legacy_client("board", BOARD)
    compat = rig.unified.get(client_id)
    assert compat is not None
    assert compat.topics == {"announcements", f"board:{BOARD}"}
    rig.legacy.disconnect(client_id)
    assert rig.unified.get(client_id) is None


def test_the_chat_declaration_is_the_one_the_matrix_uses() -> None:
    """Guards the chat cases above against a renamed type: they must carry the chat app's own types."""
    catalog, table = chat_declaration()
    assert table.to_event(CASES[3].frame) == (ChatEvent.MESSAGE_CREATED.value, CASES[3].frame["message"])
    assert table.to_event(CASES[4].frame) == (ChatEvent.THREAD_UPDATED.value, {"id": 45, "agent_id": 7,
                                                                          "title": "renamed"})
    assert catalog.topics_for(ChatEvent.THREAD_UPDATED, {"id": 45, "agent_id": 7}) == ["thread:45", "agent:7"]
    assert ChatEvent.AGENT_UPDATED.value in catalog.names


async def test_a_broadcast_whose_frame_names_another_target_goes_the_old_way_to_the_callers_target(
        rig: Rig) -> None:
    """Catches the mirror routing by the frame's data when the call named another target: the
    event would reach other sockets than the application asked for."""
    other = "0b8e7d6c-5a4f-4e3d-9c2b-1a0f9e8d7c6b"
    await rig.set_stage("card_moved", "live")
    _, asked = rig.legacy_client("board", BOARD)
    _, named = rig.legacy_client("board", other)
    frame = {"type": "card_moved", "board_id": other, "card_id": CARD, "column": "done"}
    await rig.legacy.broadcast("board", BOARD, frame)  # the call says BOARD, the frame says `other`
    assert asked.frames == [encode(frame)]
    assert named.frames == []
    now = rig.read_metrics()
    assert now.bridge_events("card_moved", "error") == 1
    assert now.published() == 0
