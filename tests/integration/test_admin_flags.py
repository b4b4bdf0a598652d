"""The admin flags API and the `wsmigrate flags` CLI against a running server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.support import ADMIN_TOKEN, RunningServer, rest


def cli(server: RunningServer, *args: str, token: str | None = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "wsmigrate", "flags", *args, "--url", server.http]
    if token:
        command += ["--token", token]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})


async def status_of(server: RunningServer, method: str, path: str, body: Any = None,
                    headers: dict[str, str] | None = None) -> int:
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        return (await client.request(method, path, json=body, headers=headers)).status_code


async def test_the_admin_api_is_disabled_without_a_configured_token(server: RunningServer) -> None:
    assert await status_of(server, "GET", "/api/admin/flags") == 403
    assert await status_of(server, "GET", "/api/admin/flags", headers={"Authorization": "Bearer x"}) == 403


async def test_the_admin_api_needs_the_right_bearer_token(server_factory: Any) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    assert await status_of(server, "GET", "/api/admin/flags") == 401
    assert await status_of(server, "GET", "/api/admin/flags", headers={"Authorization": "Bearer nope"}) == 401
    view = await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)
    assert view["revision"] == 0
    assert {row["stage"] for row in view["types"].values()} == {"off"}


async def test_stage_changes_follow_the_rules_and_are_audited(server_factory: Any) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    path = "/api/admin/flags/message_created"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Wsmigrate-Actor": "alice"}
    assert await status_of(server, "PUT", path, {"stage": "live"}, auth) == 409  # skips shadow
    assert await status_of(server, "PUT", path, {"stage": "shadow"}, auth) == 200
    assert await status_of(server, "PUT", path, {"stage": "complete", "force": True}, auth) == 200
    assert await status_of(server, "PUT", path, {"stage": "off"}, auth) == 200  # back is always allowed
    # a type the application does not declare is no flag at all: 404, naming what is declared
    assert await status_of(server, "PUT", "/api/admin/flags/not_a_type", {"stage": "off"}, auth) == 404
    async with httpx.AsyncClient(base_url=server.http, headers=auth) as http:
        refused = await http.put("/api/admin/flags/not_a_type", json={"stage": "off"})
    assert refused.json()["detail"].startswith("unknown event type 'not_a_type'; declared: agent_created")
    assert await status_of(server, "PUT", path, {"stage": "sideways"}, auth) == 422
    audit = await rest(server, "GET", "/api/admin/flags/audit", token=ADMIN_TOKEN)
    assert [(a["from"].split()[0], a["to"].split()[0], a["revision"]) for a in audit] == [
        ("stage=off", "stage=shadow", 1), ("stage=shadow", "stage=complete", 2), ("stage=complete", "stage=off", 3)]
    assert all(a["who"].startswith("alice@") for a in audit)
    registry = server.runtime.registry
    assert registry.get_sample_value("wsmigrate_flags_revision") == 3


async def test_the_flags_cli_shows_sets_kills_and_unkills(server_factory: Any) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    result = await asyncio.to_thread(cli, server, "set", "stream_chunk", "shadow")
    assert result.returncode == 0, result.stderr
    assert "stream_chunk" in result.stdout
    result = await asyncio.to_thread(cli, server, "set", "stream_chunk", "complete")
    assert result.returncode == 1
    assert "skips live" in result.stderr
    result = await asyncio.to_thread(cli, server, "kill")
    assert result.returncode == 0
    assert "kill_switch ON" in result.stdout
    shown = json.loads((await asyncio.to_thread(cli, server, "show", "--json")).stdout)
    assert shown["types"]["stream_chunk"]["stage"] == "off"
    assert shown["types"]["stream_chunk"]["source"] == "kill_switch"
    await asyncio.to_thread(cli, server, "unkill")
    shown = json.loads((await asyncio.to_thread(cli, server, "show", "--json")).stdout)
    assert shown["types"]["stream_chunk"]["stage"] == "shadow"
    registry = server.runtime.registry
    assert registry.get_sample_value("wsmigrate_event_type_stage", {"event_type": "stream_chunk",
                                                                    "stage": "shadow"}) == 1
    assert registry.get_sample_value("wsmigrate_event_type_stage", {"event_type": "stream_chunk",
                                                                    "stage": "off"}) == 0


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_the_cli_refuses_without_the_right_token(server_factory: Any, token: str | None) -> None:
    server = server_factory(admin_token=ADMIN_TOKEN)
    result = await asyncio.to_thread(cli, server, "show", token=token)
    assert result.returncode != 0
