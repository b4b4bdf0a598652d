"""The churn the refactor removes, measured by the simulator against a running server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from tests.support import RunningServer, rest


async def test_simulator_reports_one_socket_per_legacy_navigation_and_none_for_unified(
    server: RunningServer,
) -> None:
    command = [sys.executable, "-m", "wsmigrate", "simulate", "--url", server.http,
               "--scenario", "examples.chat.simulation:Scenario",
               "--legacy", "4", "--unified", "4", "--duration", "3", "--json"]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    legacy, unified = report["legacy"], report["unified"]
    assert legacy["navigations"] >= 8
    assert unified["navigations"] >= 8
    assert legacy["sockets_per_navigation"] == 1.0
    assert legacy["sockets_opened"] == legacy["navigations"]
    assert unified["sockets_per_navigation"] == 0.0
    assert unified["sockets_opened"] == 4
    assert legacy["errors"] == {}
    assert unified["errors"] == {}
    assert legacy["frames"].get("thread_history", 0) >= 1
    assert legacy["frames"].get("thread_message", 0) + legacy["frames"].get("agent_updated", 0) >= 1
    assert unified["frames"].get("subscribed", 0) >= 8
    assert sum(unified["frames"].get(t, 0) for t in ("message_created", "agent_updated", "stream_chunk")) >= 1


async def test_the_simulation_removes_what_it_created(server: RunningServer) -> None:
    command = [sys.executable, "-m", "wsmigrate", "simulate", "--url", server.http,
               "--scenario", "examples.chat.simulation:Scenario", "--legacy", "1", "--unified", "1",
               "--duration", "0.5", "--json"]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert await rest(server, "GET", "/api/agents") == []


async def test_simulate_without_a_scenario_is_a_usage_error(server: RunningServer) -> None:
    command = [sys.executable, "-m", "wsmigrate", "simulate", "--url", server.http]
    env = {k: v for k, v in os.environ.items() if k != "WSMIGRATE_SCENARIO"}
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "--scenario" in result.stderr
