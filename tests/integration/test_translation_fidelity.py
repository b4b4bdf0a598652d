"""The proof compares two independent renderings, and a lossy translation cannot hide.

An adopter's legacy call site sends a frame with a field its translation row does not carry (here:
a `thread_message` with an outer `unread_count`, which the chat app's `nested` row drops). The
legacy path must still deliver the application's own frame, at every stage; the round trip
frame -> event -> frame is measured on every mirrored broadcast, `off` included; in `shadow` the
comparator sees the unified path's rendering differ (`mismatch_payload`, with the field named);
`promote` refuses the type. The clean run of the same app raises none of it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from prometheus_client import generate_latest

from examples.chat import legacy_frames as frames
from examples.chat.legacy_client import LegacyClient
from tests.conftest import ServerFactory
from tests.support import ADMIN_TOKEN, RunningServer, promote, rest, set_stage
from wsmigrate.bridge.ops.report import build_report


def lossy_frame(message: dict[str, Any]) -> dict[str, Any]:
    """The app's frame with one field more than its translation row knows."""
    return {**frames.thread_message(message), "unread_count": 3}


def round_trips(server: RunningServer) -> dict[str, float]:
    text = generate_latest(server.runtime.registry).decode()
    return build_report(text, ["message_created"])["message_created"].round_trips


async def broadcast(server: RunningServer, thread_id: int, frame: dict[str, Any]) -> None:
    await asyncio.to_thread(server.run, server.chat.manager.broadcast_to_thread(thread_id, frame))


async def thread_with_a_legacy_socket(server_factory: ServerFactory) -> tuple[RunningServer, dict[str, Any],
                                                                              LegacyClient]:
    server = server_factory(admin_token=ADMIN_TOKEN, compare_window_s=0.2)
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    legacy = LegacyClient(f"ws://127.0.0.1:{server.port}")
    await legacy.open_thread(thread["id"])
    return server, thread, legacy


async def test_a_lossy_row_is_caught_at_off_the_legacy_frame_stays_the_apps_and_promote_refuses(
    server_factory: ServerFactory,
) -> None:
    server, thread, legacy = await thread_with_a_legacy_socket(server_factory)
    message = {"id": 99, "thread_id": thread["id"], "role": "user", "content": "hi", "timestamp": "t"}

    # Stage off: the legacy socket gets the app's frame exactly; the lossy round trip is counted.
    await broadcast(server, thread["id"], lossy_frame(message))
    assert await legacy.expect("thread_message") == lossy_frame(message)
    assert round_trips(server) == {"exact": 0.0, "lossy": 1.0}
    samples = (await rest(server, "GET", "/api/admin/mismatches", token=ADMIN_TOKEN))["translation_samples"]
    assert [(s["frame_type"], s["differences"]) for s in samples] == [
        ("thread_message", [{"path": "unread_count", "legacy": 3, "unified": "<missing>"}])]
    refused = await asyncio.to_thread(promote, server, "message_created")
    assert refused.returncode == 1
    assert "1 lossy translation round trips" in refused.stderr

    # Stage shadow: the unified path renders from the event, the comparator sees the field go.
    await set_stage(server, "message_created", "shadow")
    await broadcast(server, thread["id"], lossy_frame({**message, "id": 100}))
    assert (await legacy.expect("thread_message"))["unread_count"] == 3  # still the app's own frame
    await legacy.ping(1)
    server.call(server.runtime.comparator.flush)
    outcomes = server.call(lambda: dict(server.runtime.comparator.outcomes["message_created"]))
    assert outcomes == {"mismatch_payload": 1}
    [sample] = (await rest(server, "GET", "/api/admin/mismatches", token=ADMIN_TOKEN))["samples"]
    assert sample["differences"] == [{"path": "unread_count", "legacy": 3, "unified": "<missing>"}]
    await legacy.close()


async def test_the_reference_apps_own_frames_round_trip_exactly_and_compare_as_matches(
    server_factory: ServerFactory,
) -> None:
    server, thread, legacy = await thread_with_a_legacy_socket(server_factory)
    for stage in ("off", "shadow"):
        await set_stage(server, "message_created", stage)
        message = {"id": 2000 + len(stage), "thread_id": thread["id"], "role": "user", "content": f"in {stage}",
                   "timestamp": "2026-01-01T00:00:00.000Z"}
        await broadcast(server, thread["id"], frames.thread_message(message))
        # A frame with keys in another order than the translation renders them is still exact.
        await broadcast(server, thread["id"], dict(reversed(list(frames.thread_message(
            {"id": 1000 + len(stage), "thread_id": thread["id"], "role": "user", "content": "x", "timestamp": "t"},
        ).items()))))
        for _ in range(2):
            await legacy.expect("thread_message")
    await legacy.ping(1)
    server.call(server.runtime.comparator.flush)
    assert round_trips(server) == {"exact": 4.0, "lossy": 0.0}
    assert server.call(lambda: dict(server.runtime.comparator.outcomes["message_created"])) == {"match": 2}
    mismatches = await rest(server, "GET", "/api/admin/mismatches", token=ADMIN_TOKEN)
    assert (mismatches["samples"], mismatches["translation_samples"]) == ([], [])
    await legacy.close()


async def test_comparisons_of_events_published_on_the_bus_are_reported_as_recipients_only(
    server_factory: ServerFactory,
) -> None:
    server, thread, legacy = await thread_with_a_legacy_socket(server_factory)
    await legacy.close()
    agent_socket = LegacyClient(f"ws://127.0.0.1:{server.port}")
    await agent_socket.open_agent(thread["agent_id"])
    await set_stage(server, "thread_updated", "shadow")  # raised by `@publish_event`: no application frame
    await rest(server, "PATCH", f"/api/threads/{thread['id']}", {"title": "renamed"})
    await agent_socket.expect("thread_updated")
    await agent_socket.ping(1)
    server.call(server.runtime.comparator.flush)
    report = await rest(server, "GET", "/api/admin/report", token=ADMIN_TOKEN)
    figures = report["types"]["thread_updated"]
    assert (figures["compared"], figures["compared_recipients_only"]) == (1, 1)
    printed = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "wsmigrate", "report", "--url", server.http],
        capture_output=True, text=True, timeout=30)
    assert "1 of 1 comparisons are of events published on the bus: recipients were compared, not payloads" \
        in printed.stdout, printed.stdout + printed.stderr
    await agent_socket.close()
