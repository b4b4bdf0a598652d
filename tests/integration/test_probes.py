"""Synthetic probes close the loop through real loopback sockets on both paths."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support import ADMIN_TOKEN, Client, rest, set_stage
from wsmigrate.unified.errors import BusUnavailableError


async def test_probes_round_trip_on_both_paths_and_count_in_no_application_type(server_factory: Any) -> None:
    # A long interval: the test drives probes itself, the periodic loop stays out of the way.
    server = server_factory(probes=True, probe_interval_s=3600, probe_window_s=0.2, admin_token=ADMIN_TOKEN)
    probes = server.runtime.probes
    server.run(probes.wait_ready(15))
    registry = server.runtime.registry
    for stage in ("off", "live"):  # an application type's stage has nothing to do with the probe
        await set_stage(server, "stream_chunk", stage)
        expected = 1 if stage == "off" else 2
        server.run(probes.probe_once(expected))
        for path in ("legacy", "unified"):
            server.run(probes.wait_received(path, expected, 10))
        health = await rest(server, "GET", "/healthz")
        assert health["status"] == "ok"
        assert health["probes"]["failing"] == []
    for path in ("legacy", "unified"):
        count = registry.get_sample_value("wsmigrate_probe_roundtrip_seconds_count", {"path": path})
        assert count == 2
    assert registry.get_sample_value("wsmigrate_events_published_total",
                                     {"event_type": "wsmigrate_probe", "origin": "probe"}) == 2
    for event_type in server.runtime.catalog.names:  # the probe's own type, not the application's
        assert registry.get_sample_value("wsmigrate_events_published_total",
                                         {"event_type": event_type, "origin": "probe"}) == 0
    report = await rest(server, "GET", "/api/admin/report", token=ADMIN_TOKEN)
    assert "wsmigrate_probe" not in report["types"]


async def test_an_application_client_never_receives_a_probe(server_factory: Any) -> None:
    server = server_factory(probes=True, probe_interval_s=3600, probe_window_s=0.2)
    probes = server.runtime.probes
    server.run(probes.wait_ready(15))
    client = await Client.open(server.ws_url("/api/ws?topics=agents,system"))
    await client.expect("subscribed")
    server.run(probes.probe_once(1))
    server.run(probes.wait_received("unified", 1, 10))
    await client.send({"type": "ping"})
    await client.expect("pong")
    assert [f for f in client.frames if f.get("type") == "wsmigrate_probe"] == []
    await client.close()


async def test_the_unified_probe_answers_heartbeats_and_stays_connected(server_factory: Any) -> None:
    server = server_factory(probes=True, probe_interval_s=3600, probe_window_s=0.2,
                            heartbeat_interval_s=0.2, heartbeat_timeout_s=0.3)
    probes = server.runtime.probes
    server.run(probes.wait_ready(15))
    opened = server.runtime.registry.get_sample_value("wsmigrate_connections_opened_total", {"kind": "unified"})
    for sequence in range(3):  # several heartbeat timeouts long: a probe that did not answer is closed
        await asyncio.sleep(0.5)
        server.run(probes.probe_once(sequence))
        server.run(probes.wait_received("unified", sequence + 1, 10))
    assert server.runtime.registry.get_sample_value(
        "wsmigrate_connections_closed_total", {"kind": "unified", "reason": "heartbeat_timeout"}) == 0
    assert server.runtime.registry.get_sample_value("wsmigrate_connections_opened_total",
                                                    {"kind": "unified"}) == opened


async def test_a_probe_that_does_not_arrive_is_counted_missing_and_shows_on_healthz(server_factory: Any) -> None:
    server = server_factory(probes=True, probe_interval_s=3600, probe_window_s=0.01)
    probes = server.runtime.probes
    server.run(probes.wait_ready(15))
    probes._pending["probe:lost"] = (0.0, {"unified"})  # a probe only the unified client saw
    server.call(probes._check_missing)
    async with httpx.AsyncClient(base_url=server.http) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    health = response.json()
    assert health["status"] == "degraded"
    assert health["probes"]["failing"] == ["legacy"]
    registry = server.runtime.registry
    assert registry.get_sample_value("wsmigrate_probe_missing_total", {"path": "legacy"}) == 1
    assert registry.get_sample_value("wsmigrate_probe_missing_total", {"path": "unified"}) == 0


async def test_the_probe_loop_survives_a_bus_outage_and_resumes(server_factory: Any) -> None:
    server = server_factory(probes=True, probe_interval_s=0.05, probe_window_s=5)
    probes = server.runtime.probes
    server.run(probes.wait_ready(15))
    bus = server.runtime.bus
    publish = bus.publish
    failures = 3

    async def flaky(event: Any, *, origin: str = "bus") -> bool:
        nonlocal failures
        if origin == "probe" and failures > 0:
            failures -= 1
            raise BusUnavailableError("redis is down (injected)")
        return await publish(event, origin=origin)

    server.call(lambda: setattr(bus, "publish", flaky))
    try:
        received = probes.status.received["unified"]
        server.run(probes.wait_received("unified", received + 1, 10))  # after the outage, probes arrive again
    finally:
        server.call(lambda: delattr(bus, "publish"))
    assert probes.status.publish_failures >= 3
