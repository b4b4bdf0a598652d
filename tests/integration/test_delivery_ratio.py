"""The delivery ratio compares like with like: legacy-socket recipients on both paths, nothing else.

A server in `shadow` with legacy sockets and many more native unified clients: the ratio the
`WsmigrateDeliveryRatioLow` alert computes (`wsmigrate_legacy_recipient_frames_total`, unified over
legacy) is exactly 1, whatever the native clients receive. Then one legacy socket is dropped from
the unified path (its compat subscription removed: the fault "drop one recipient"): the ratio
falls below the alert's 99.9%, and the comparator counts the misses.
"""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from examples.chat.legacy_client import LegacyClient
from tests.conftest import ServerFactory
from tests.support import ADMIN_TOKEN, Client, RunningServer, rest, set_stage

LEGACY_SOCKETS = 3
NATIVE_CLIENTS = 5
MESSAGES = 10


def frames_by_path(server: RunningServer, event_type: str) -> dict[tuple[str, str], float]:
    text = generate_latest(server.runtime.registry).decode()
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("wsmigrate_legacy_recipient_frames", "wsmigrate_recipient_deliveries"):
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["event_type"] == event_type:
                    labels = sample.labels
                    key = (family.name.removeprefix("wsmigrate_"), f"{labels['path']}:{labels['outcome']}")
                    counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def ratio(counts: dict[tuple[str, str], float]) -> float:
    frames = {k[1]: v for k, v in counts.items() if k[0] == "legacy_recipient_frames"}
    unified = frames["unified:sent"] + frames["unified:shadow"]
    legacy = frames["legacy:sent"] + frames["legacy:shadow"]
    return unified / legacy


async def post_and_receive(server: RunningServer, thread_id: int, legacy: list[LegacyClient],
                           natives: list[Client], first: int) -> None:
    for n in range(first, first + MESSAGES):
        await rest(server, "POST", f"/api/threads/{thread_id}/messages", {"content": f"m{n}"})
    for client in legacy:
        for _ in range(MESSAGES):
            await client.expect("thread_message")
    for native in natives:
        for _ in range(MESSAGES):
            await native.expect("message_created")


async def test_native_clients_do_not_pad_the_ratio_and_one_dropped_recipient_shows(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN, compare_window_s=0.2)
    await set_stage(server, "message_created", "shadow")
    agent = await rest(server, "POST", "/api/agents", {"name": "Ada"})
    thread = await rest(server, "POST", "/api/threads", {"agent_id": agent["id"]})
    topic = f"thread:{thread['id']}"
    legacy = [LegacyClient(f"ws://127.0.0.1:{server.port}") for _ in range(LEGACY_SOCKETS)]
    for client in legacy:
        await client.open_thread(thread["id"])
    natives = [await Client.open(server.ws_url()) for _ in range(NATIVE_CLIENTS)]
    for native in natives:
        await native.subscribe(topic)

    await post_and_receive(server, thread["id"], legacy, natives, 0)
    healthy = frames_by_path(server, "message_created")
    assert healthy[("recipient_deliveries", "unified:sent")] == NATIVE_CLIENTS * MESSAGES  # not in the ratio
    assert ratio(healthy) == 1.0

    # Fault: the unified path loses one legacy recipient.
    def drop_one() -> None:
        runtime = server.runtime
        victim = next(iter(runtime.legacy.followers("thread", thread["id"])))
        compat = runtime.manager.get(victim.client_id)
        assert compat is not None
        runtime.manager.unsubscribe(compat, [topic])

    server.call(drop_one)
    await post_and_receive(server, thread["id"], legacy, natives, MESSAGES)
    faulty = frames_by_path(server, "message_created")
    assert ratio(faulty) == (2 * LEGACY_SOCKETS * MESSAGES - MESSAGES) / (2 * LEGACY_SOCKETS * MESSAGES)
    assert ratio(faulty) < 0.999  # the alert's threshold
    await asyncio.gather(*(client.ping(1) for client in legacy))
    server.call(server.runtime.comparator.flush)
    outcomes = server.call(lambda: dict(server.runtime.comparator.outcomes["message_created"]))
    assert outcomes == {"match": 2 * LEGACY_SOCKETS * MESSAGES - MESSAGES, "missing_unified": MESSAGES}
    for client in legacy:
        await client.close()
    for native in natives:
        await native.close()
