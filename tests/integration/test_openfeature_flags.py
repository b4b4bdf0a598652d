"""A server whose flags come from an OpenFeature provider: the admin API, `wsmigrate promote` and
`/healthz` show the provider as the source of truth, and writes say where to make them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from openfeature import api

from tests.integration.test_cli import wsmigrate
from tests.support import ADMIN_TOKEN, rest
from tests.unit.test_flags_openfeature import Provider, flag


async def test_the_admin_api_cli_and_healthz_show_the_provider_as_the_source_of_truth(server_factory: Any) -> None:
    domain = f"wsmigrate-test-{uuid.uuid4().hex[:8]}"
    provider = Provider({"wsmigrate.stage.message_created": flag("shadow")})
    api.set_provider(provider, domain=domain)
    server = server_factory(admin_token=ADMIN_TOKEN, flags="openfeature", openfeature_domain=domain)
    view = await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)
    assert view["store"] == {"kind": "openfeature", "writable": False, "provider": "In-Memory Provider",
                             "prefix": "wsmigrate", "stage_flag": "wsmigrate.stage.{event_type}"}
    assert view["types"]["message_created"]["stage"] == "shadow"
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await rest(server, "PUT", "/api/admin/flags/message_created", {"stage": "live"}, token=ADMIN_TOKEN)
    assert refused.value.response.status_code == 409
    assert "set wsmigrate.stage.message_created to 'live' there" in refused.value.response.text
    # promote judges the numbers as always, then prints the change to make instead of making it
    result = await asyncio.to_thread(wsmigrate, "promote", "agent_created", "--url", server.http,
                                     "--admin-token", ADMIN_TOKEN)
    assert result.returncode == 0, result.stderr
    assert "set wsmigrate.stage.agent_created to 'shadow' there" in result.stdout
    shown = await asyncio.to_thread(wsmigrate, "flags", "show", "--url", server.http, "--admin-token", ADMIN_TOKEN)
    assert shown.returncode == 0, shown.stderr
    assert "source of truth: the openfeature provider 'In-Memory Provider'" in shown.stdout
    assert "set wsmigrate.stage.{event_type} there" in shown.stdout
    after = await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)
    assert after["types"]["agent_created"]["stage"] == "off"  # nothing was written
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        health = (await http.get("/healthz")).json()
    assert health["flags"] == {"store": "openfeature", "error": None}
    # a value the store cannot use is counted, shown, and not applied
    provider.change(wsmigrate__stage__message_created="turbo")
    server.call(server.runtime.flags.refresh)  # what the provider's change event schedules
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        health = (await http.get("/healthz")).json()
        metrics = (await http.get("/metrics")).text
    assert "'turbo' is not a stage" in health["flags"]["error"]
    assert "wsmigrate_flags_rejections_total 1.0" in metrics
    assert (await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN))["types"]["message_created"][
        "stage"] == "shadow"
