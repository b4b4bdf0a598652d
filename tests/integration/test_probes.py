"""Synthetic probes close the loop through real loopback sockets on both paths."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import ADMIN_TOKEN, rest, set_stage


async def test_probes_round_trip_on_both_paths_and_follow_stage_rules(server_factory: Any) -> None:
    # A long interval: the test drives probes itself, the periodic loop stays out of the way.
    server = server_factory(probes=True, probe_interval_s=3600, probe_window_s=0.2, admin_token=ADMIN_TOKEN)
    probes = server.runtime.probes
    server.run(probes.wait_ready(15))
    registry = server.runtime.registry
    for stage in ("off", "live"):
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
                                     {"event_type": "stream_chunk", "origin": "probe"}) == 2


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
