"""Flip stages back and forth under load: zero lost, zero duplicated, per-topic order preserved.

100 legacy and 100 unified clients follow one thread. A run streams its reply while messages are
posted continuously; meanwhile `message_created` and `stream_chunk` are flipped between all four
stages as fast as the admin API allows. Every client's frames are then checked against the full
list of what was published. At the end the kill switch is thrown by editing the flags file, under
the same load, and must put every type back to `off` within a second.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path
from typing import Any

from examples.chat import legacy_frames as frames
from examples.chat.legacy_client import LegacyClient
from examples.chat.responder import reply_text
from tests.support import ADMIN_TOKEN, Client, RunningServer, rest, set_stage
from wsmigrate.bridge.stages import FlagsDocument

CLIENTS = 100
MESSAGES = 60
CHUNKS = 300
FLIP_TYPES = ("message_created", "stream_chunk")
CYCLE = ("shadow", "live", "complete", "live", "shadow", "off")


def legacy_form(event: dict[str, Any]) -> dict[str, Any]:
    """The legacy frame a legacy client must have received for a unified event frame."""
    data = event["data"]
    if event["type"] == "message_created":
        return frames.thread_message(data)
    return {"type": event["type"], **data}


async def flip_until(server: RunningServer, stop: asyncio.Event) -> int:
    flips = 0
    for stage in itertools.cycle(CYCLE):
        if stop.is_set():
            return flips
        for event_type in FLIP_TYPES:
            await set_stage(server, event_type, stage)
            flips += 1


async def receive_until_final(client: Client, final_id: int) -> list[dict[str, Any]]:
    while True:
        frame = await client.recv(20)
        if frame["type"] == "message_created" and frame["data"]["id"] == final_id:
            return [f for f in client.frames if "event_id" in f]


async def legacy_until_final(client: LegacyClient, final_id: int) -> list[dict[str, Any]]:
    while True:
        frame = await client.recv(20)
        if frame["type"] == "thread_message" and frame["message"]["id"] == final_id:
            return [f for f in client.frames if f["type"] != "thread_history"]


async def test_flipping_stages_under_load_loses_and_duplicates_nothing(server_factory: Any, tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.toml"
    server: RunningServer = server_factory(admin_token=ADMIN_TOKEN, flags_file=str(flags_file),
                                           stream_delay_ms=2, outbox_capacity=5000)
    agent = await rest(server, "POST", "/api/agents", {"name": "load"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    topic, base = f"thread:{thread['id']}", f"ws://127.0.0.1:{server.port}"
    legacy_clients = [LegacyClient(base) for _ in range(CLIENTS)]
    await asyncio.gather(*(c.open_thread(thread["id"]) for c in legacy_clients))
    unified_clients = await asyncio.gather(*(Client.open(server.ws_url()) for _ in range(CLIENTS)))
    await asyncio.gather(*(c.subscribe(topic) for c in unified_clients))

    first = await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "go"})
    stop = asyncio.Event()
    flipper = asyncio.create_task(flip_until(server, stop))
    await rest(server, "POST", f"/api/threads/{thread['id']}/run", {"chunks": CHUNKS})
    posted = [first["id"]]
    for index in range(MESSAGES):
        posted.append((await rest(server, "POST", f"/api/threads/{thread['id']}/messages",
                                  {"content": f"m{index}"}))["id"])
    reference = unified_clients[0]
    async with asyncio.timeout(60):
        while not any(f["type"] == "stream_end" for f in reference.frames):
            await reference.recv()
    stop.set()
    flips = await flipper

    # The kill switch, thrown by editing the flags file while traffic continues.
    killed = threading.Event()
    server.runtime.flags.add_listener(lambda doc: killed.set() if doc.kill_switch else None)
    document = FlagsDocument.model_validate_json(server.runtime.flags.current().to_json())
    thrown = time.monotonic()
    flags_file.write_text(f"kill_switch = true\nrevision = {document.revision}\n")
    posting = asyncio.create_task(rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "k"}))
    assert await asyncio.to_thread(killed.wait, 1.0), "kill switch not in force within 1 s"
    assert time.monotonic() - thrown < 1.0
    posted.append((await posting)["id"])
    view = await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)
    assert {row["stage"] for row in view["types"].values()} == {"off"}
    after_kill = await rest(server, "POST", f"/api/threads/{thread['id']}/messages", {"content": "after kill"})
    posted.append(after_kill["id"])

    expected = await receive_until_final(reference, after_kill["id"])
    seqs = [f["seq"] for f in expected]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "per-topic seq has a gap or a repeat"
    user_ids = [f["data"]["id"] for f in expected if f["type"] == "message_created" and f["data"]["role"] == "user"]
    assert sorted(user_ids) == sorted(posted), "a published message is missing or duplicated"
    chunks = [f["data"]["content"] for f in expected if f["type"] == "stream_chunk"]
    assert "".join(chunks) == reply_text("go", CHUNKS)
    assert [f["type"] for f in expected].count("stream_start") == 1
    assert [f["type"] for f in expected].count("stream_end") == 1

    event_ids = [f["event_id"] for f in expected]
    unified_seen = await asyncio.gather(*(receive_until_final(c, after_kill["id"]) for c in unified_clients[1:]))
    for got in unified_seen:
        assert [f["event_id"] for f in got] == event_ids
    wanted_legacy = [legacy_form(f) for f in expected]
    legacy_seen = await asyncio.gather(*(legacy_until_final(c, after_kill["id"]) for c in legacy_clients))
    for got in legacy_seen:
        assert got == wanted_legacy

    assert flips >= 20
    registry = server.runtime.registry
    for event_type in FLIP_TYPES:  # both paths really served the legacy sockets during the flips
        for path in ("legacy", "unified"):
            sent = registry.get_sample_value("wsmigrate_recipient_deliveries_total",
                                             {"event_type": event_type, "path": path, "outcome": "sent"})
            assert sent is not None
            assert sent > 0
    for client in legacy_clients:
        await client.close()
    await asyncio.gather(*(c.close() for c in unified_clients))
