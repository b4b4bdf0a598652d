"""A rollout driven from flagd, the way a team with its own flag service runs one: flagd's
OpenFeature provider in in-process file mode (no flagd daemon, no network) evaluates the flag file
an operator edits. While messages are posted without pause, the file takes `message_created`
through `off`, `shadow`, a 50% live cohort picked by flagd's `fractional` rule on each connection's
key, `live` and `complete`. 50 legacy and 50 unified clients must each count every message exactly
once, whichever path served it at the moment of each flip.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType

from examples.chat.legacy_client import LegacyClient
from tests.support import ADMIN_TOKEN, Client, RunningServer, rest
from wsmigrate.bridge.stages import FlagsDocument

CLIENTS = 50
PER_STEP = 12  # messages posted after a step took effect, before the next flip
FLAG = "wsmigrate.stage.message_created"
STEP_TIMEOUT_S = 15.0
DELIVERY_TIMEOUT_S = 30.0


def flag_file(stage: str, live_percent: int = 0) -> dict[str, Any]:
    """The flagd definition docs/operations.md gives: the type's stage is the default variant; a
    cohort is a `fractional` rule applied to connections only (`wsmigrate_scope`)."""
    definition: dict[str, Any] = {
        "state": "ENABLED",
        "variants": {s: s for s in ("off", "shadow", "live", "complete")},
        "defaultVariant": stage,
    }
    if live_percent:
        definition["targeting"] = {"if": [
            {"==": [{"var": "wsmigrate_scope"}, "connection"]},
            {"fractional": [["live", live_percent], [stage, 100 - live_percent]]},
            None,
        ]}
    return {"flags": {FLAG: definition}}


class FlagFile:
    """The operator's flag file, and the server's view of it: each edit waits until it is in force."""

    def __init__(self, path: Path, server: RunningServer) -> None:
        self.path = path
        self.server = server
        self._seen = threading.Event()

        def seen(*_: Any) -> None:
            self._seen.set()

        flags = server.runtime.flags
        server.call(lambda: flags.add_listener(lambda _doc: seen()))
        server.call(lambda: flags.add_cohort_listener(seen))  # type: ignore[attr-defined]

    def write(self, stage: str, live_percent: int = 0) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(flag_file(stage, live_percent)))
        os.replace(temporary, self.path)

    async def edit(self, stage: str, live_percent: int = 0) -> FlagsDocument:
        self._seen.clear()
        self.write(stage, live_percent)
        flags = self.server.runtime.flags
        while True:  # a listener fires for each re-read; wait for the one that shows this edit
            assert await asyncio.to_thread(self._seen.wait, STEP_TIMEOUT_S), f"{stage} never took effect"
            self._seen.clear()
            document: FlagsDocument = flags.current()
            stage_now = document.flags_for("message_created").stage
            cohort = self.server.runtime.bridge.cohorts
            assert cohort is not None
            live_now = self.server.call(cohort.counts).get("message_created", {}).get("live", 0)
            if stage_now is not None and stage_now.value == stage and (live_percent == 0) == (live_now == 0):
                return document


def legacy_sockets_served(server: RunningServer, path: str) -> float:
    """Deliveries of `message_created` to legacy sockets written by `path` (legacy or unified)."""
    return server.runtime.registry.get_sample_value(
        "wsmigrate_recipient_deliveries_total",
        {"event_type": "message_created", "path": path, "outcome": "sent"}) or 0.0


async def read_until(client: Client | LegacyClient, done: Any) -> None:
    async with asyncio.timeout(DELIVERY_TIMEOUT_S):
        while not done(await client.recv(DELIVERY_TIMEOUT_S)):
            pass


@pytest.mark.timeout(240)
async def test_fifty_legacy_and_fifty_unified_clients_count_every_event_once_through_a_flagd_rollout(
    server_factory: Any, tmp_path: Path,
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flag_file("off")))
    domain = f"wsmigrate-flagd-{uuid.uuid4().hex[:8]}"
    api.set_provider(FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path),
                                   deadline_ms=100), domain=domain)
    server: RunningServer = server_factory(flags="openfeature", openfeature_domain=domain, admin_token=ADMIN_TOKEN)
    flags = FlagFile(path, server)
    agent = await rest(server, "POST", "/api/agents", {"name": "flagd"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    legacy = [LegacyClient(f"ws://127.0.0.1:{server.port}") for _ in range(CLIENTS)]
    for client in legacy:
        await client.open_thread(thread["id"])
    unified = [await Client.open(server.ws_url()) for _ in range(CLIENTS)]
    for each in unified:
        await each.subscribe(f"thread:{thread['id']}")

    posted: list[int] = []
    counter = itertools.count()
    goal, reached = [0], asyncio.Event()  # the publisher says when `goal` messages are posted

    async def post_one() -> None:
        message = await rest(server, "POST", f"/api/threads/{thread['id']}/messages",
                             {"content": f"m{next(counter)}"})
        posted.append(message["id"])
        if len(posted) >= goal[0]:
            reached.set()

    async def publish() -> None:  # without pause: every flip lands in the middle of the traffic
        while True:
            await post_one()

    publisher = asyncio.create_task(publish())
    splits: list[dict[str, int]] = []
    served_in_cohort: list[tuple[float, float]] = []  # (legacy, unified) writes during each cohort step
    try:
        for stage, percent in [("shadow", 0), ("shadow", 50), ("live", 0), ("complete", 0), ("live", 0),
                               ("shadow", 50), ("shadow", 0), ("off", 0)]:
            await flags.edit(stage, percent)
            before = legacy_sockets_served(server, "legacy"), legacy_sockets_served(server, "unified")
            if percent:
                splits.append(server.call(server.runtime.bridge.cohorts.counts)["message_created"])
                view = await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)  # what operators see
                report = await rest(server, "GET", "/api/admin/report", token=ADMIN_TOKEN)
                assert view["types"]["message_created"]["provider_cohort"] == splits[-1]
                assert report["types"]["message_created"]["provider_cohort"] == splits[-1]
            goal[0] = len(posted) + PER_STEP
            reached.clear()
            await asyncio.wait_for(reached.wait(), STEP_TIMEOUT_S)
            if percent:
                served_in_cohort.append((legacy_sockets_served(server, "legacy") - before[0],
                                         legacy_sockets_served(server, "unified") - before[1]))
    finally:
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
    await post_one()  # the last one: per-topic order makes it the end of each client's stream
    last = posted[-1]

    def legacy_done(frame: dict[str, Any]) -> bool:
        return frame.get("type") == "thread_message" and frame["message"]["id"] == last

    def unified_done(frame: dict[str, Any]) -> bool:
        return frame.get("type") == "message_created" and frame["data"]["id"] == last

    await asyncio.gather(*(read_until(c, legacy_done) for c in legacy),
                         *(read_until(c, unified_done) for c in unified))
    # posted in request order; a request cancelled with the publisher may also have been stored
    expected = sorted(posted)
    for client in legacy:
        ids = [f["message"]["id"] for f in client.frames if f.get("type") == "thread_message"]
        assert sorted(set(ids)) == ids == sorted(ids), "a legacy client got a message twice or out of order"
        assert set(expected) <= set(ids), f"a legacy client missed {sorted(set(expected) - set(ids))}"
    for each in unified:
        ids = [f["data"]["id"] for f in each.frames if f.get("type") == "message_created"]
        assert sorted(set(ids)) == ids, "a unified client got a message twice or out of order"
        assert set(expected) <= set(ids), f"a unified client missed {sorted(set(expected) - set(ids))}"
    for split in splits:  # flagd's fractional rule really split the legacy connections
        assert 10 <= split["live"] <= 40, split
        assert split["live"] + split["legacy"] == CLIENTS
    assert splits[0] == splits[1]  # sticky: the same connections again at the second 50%
    for legacy_writes, unified_writes in served_in_cohort:  # and both paths served legacy sockets
        assert legacy_writes > 0
        assert unified_writes > 0
    # every change seen from flagd is counted and audited, from -> to
    stage_changes = {(labels["from_stage"], labels["to_stage"]): value
                     for metric in server.runtime.registry.collect() if metric.name == "wsmigrate_flags_stage_changes"
                     for name, labels, value in (s[:3] for s in metric.samples)
                     if name.endswith("_total") and labels["event_type"] == "message_created"}
    assert stage_changes == {("off", "shadow"): 1, ("shadow", "live"): 1, ("live", "complete"): 1,
                             ("complete", "live"): 1, ("live", "shadow"): 1, ("shadow", "off"): 1}
    audited = [(e["from"].split()[0], e["to"].split()[0]) for e in server.runtime.flags.audit()
               if e["event_type"] == "message_created"]
    assert audited[0] == ("stage=off", "stage=shadow")
    assert len(audited) == 6  # one per stage change; the cohort edits change who is live, not the stage
    for client in legacy:
        await client.close()
    for each in unified:
        await each.close()
