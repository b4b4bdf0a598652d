"""End to end: 10,000 events of every type, 50 legacy and 50 unified clients, in shadow then live.

The comparator must report 100% consistency with nothing missing, and the server's counters must
equal what the clients counted on their side.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from typing import Any

from examples.chat.declaration import ChatEvent, chat_translations
from examples.chat.legacy_client import LegacyClient
from tests.support import ADMIN_TOKEN, Client, RunningServer, rest, set_stage

LEGACY_CLIENTS = UNIFIED_CLIENTS = 50
EVENTS_PER_PHASE = 5_000  # 10,000 events in all: 5,000 in shadow, then 5,000 in live


def batches(agents: list[int], threads: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Synthetic event batches covering every event type, about EVENTS_PER_PHASE in all."""
    plan: list[dict[str, Any]] = []
    per = EVENTS_PER_PHASE // (len(ChatEvent) * 2)
    for agent_id in agents[:2]:
        agent = {"id": agent_id, "agent_id": agent_id, "name": "a", "status": "idle"}
        for t in ("agent_created", "agent_updated", "agent_status_changed", "agent_deleted"):
            plan.append({"type": t, "topic": f"agent:{agent_id}", "count": per, "data": agent})
    for thread_id, agent_id in threads[:2]:
        thread = {"id": thread_id, "thread_id": thread_id, "agent_id": agent_id, "title": "t"}
        for t in ("thread_created", "thread_updated", "thread_deleted"):
            plan.append({"type": t, "topic": f"thread:{thread_id}", "count": per, "data": thread})
        message = {"id": 1, "thread_id": thread_id, "role": "user", "content": "x", "timestamp": "t"}
        plan.append({"type": "message_created", "topic": f"thread:{thread_id}", "count": per, "data": message})
        for t in ("stream_start", "stream_chunk", "stream_end", "stream_error"):
            plan.append({"type": t, "topic": f"thread:{thread_id}", "count": per,
                         "data": {"thread_id": thread_id, "content": "tok"}})
    plan.append({"type": "system_status", "topic": "system", "count": per * 2, "data": {"status": "ok"}})
    return plan


def sample(server: RunningServer, name: str, **labels: str) -> float:
    return server.runtime.registry.get_sample_value(name, labels) or 0.0


TRANSLATIONS = chat_translations()


def delivered(server: RunningServer, path: str) -> Counter[str]:
    return Counter({t.value: sample(server, "wsmigrate_recipient_deliveries_total", event_type=t.value, path=path,
                                    outcome="sent") for t in ChatEvent})


async def flush_counts(legacy: list[LegacyClient], unified: list[Client]) -> tuple[Counter[str], Counter[str]]:
    """Per event type, the frames every client received (a ping answer marks the end)."""
    legacy_counts: Counter[str] = Counter()
    for client in legacy:
        start = len(client.frames)
        await client.ping(1)
        for frame in client.frames[start:]:
            known = TRANSLATIONS.for_frame(frame)
            if known is not None and known.event_type is not None:
                legacy_counts[known.event_type] += 1
    unified_counts: Counter[str] = Counter()
    for uclient in unified:
        start = len(uclient.frames)
        await uclient.send({"type": "ping"})
        await uclient.expect("pong", 60)
        unified_counts.update(f["type"] for f in uclient.frames[start:] if "event_id" in f)
    return legacy_counts, unified_counts


async def test_shadow_then_live_is_fully_consistent_and_counters_match_clients(server_factory: Any) -> None:
    server: RunningServer = server_factory(admin_token=ADMIN_TOKEN, compare_window_s=0.5, outbox_capacity=20_000,
                                           compare_capacity=1_000_000)
    agents = [(await rest(server, "POST", "/api/agents", {"name": f"a{i}"}))["id"] for i in range(2)]
    threads = [((await rest(server, "POST", "/api/threads", {"agent_id": a}))["id"], a) for a in agents]
    base = f"ws://127.0.0.1:{server.port}"
    legacy = [LegacyClient(base) for _ in range(LEGACY_CLIENTS)]
    for index, client in enumerate(legacy):
        if index % 2:
            await client.open_agent(agents[index % 2])
        else:
            await client.open_thread(threads[(index // 2) % 2][0])
    topics = ["agents", "system", *(f"agent:{a}" for a in agents), *(f"thread:{t}" for t, _ in threads)]
    unified = [await Client.open(server.ws_url()) for _ in range(UNIFIED_CLIENTS)]
    for index, uclient in enumerate(unified):
        await uclient.subscribe(topics[index % len(topics)], topics[(index + 3) % len(topics)])

    for phase in ("shadow", "live"):
        for event_type in ChatEvent:
            await set_stage(server, event_type.value, phase)
        legacy_before, unified_before = delivered(server, "legacy"), delivered(server, "unified")
        for batch in batches(agents, threads):
            await rest(server, "POST", "/api/admin/events", batch, token=ADMIN_TOKEN)
        legacy_counts, unified_counts = await flush_counts(legacy, unified)
        legacy_sent = delivered(server, "legacy") - legacy_before
        unified_sent = delivered(server, "unified") - unified_before
        if phase == "shadow":  # legacy sockets served by the legacy path
            assert +legacy_sent == +legacy_counts
            assert +unified_sent == +unified_counts
        else:  # everything served by the unified path, legacy sockets through the compat adapter
            assert +legacy_sent == Counter()
            assert +unified_sent == +(legacy_counts + unified_counts)
        assert sum(legacy_counts.values()) > EVENTS_PER_PHASE
        assert set(legacy_counts) == {t.value for t in ChatEvent}

    server.call(server.runtime.comparator.flush)
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "wsmigrate", "report", "--url", server.http, "--json"],
        capture_output=True, text=True, timeout=60)
    report = json.loads(result.stdout)
    published = sum(sample(server, "wsmigrate_events_published_total", event_type=t.value, origin="admin")
                    for t in ChatEvent)
    assert published >= 2 * EVENTS_PER_PHASE * 0.95
    capacity_skips = sum(sample(server, "wsmigrate_comparisons_skipped_total", event_type=t.value, reason="capacity")
                         for t in ChatEvent)
    assert capacity_skips == 0  # the comparison covered every delivery
    for event_type, row in report.items():
        assert row["missing"] == 0, event_type
        assert row["mismatches"] == 0, event_type
        assert row["consistency"] == 100.0, event_type
        assert row["compared"] > 0
    total_compared = sum(row["compared"] for row in report.values())
    total_legacy_frames = sum(row["delivered"]["legacy"] for row in report.values())
    # every legacy delivery in shadow and live produced exactly one compared pair
    assert total_compared == total_legacy_frames + sum(
        sample(server, "wsmigrate_recipient_deliveries_total", event_type=t.value, path="legacy", outcome="shadow")
        for t in ChatEvent)
    for client in legacy:
        await client.close()
    for uclient in unified:
        await uclient.close()
