"""docs/migration-guide.md, executed: its Python blocks build an app, which is then served and used
with real sockets; its `wsmigrate` commands run against that server; its flags document is
validated against the guide's own catalogue; its `pip install` extras exist."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import tomllib
import types
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.docs.markdown import ROOT, code_blocks, shell_commands
from tests.support import Client, RunningServer, rest
from wsmigrate.bridge.stages import parse_document

GUIDE = ROOT / "docs" / "migration-guide.md"
BLOCKS = code_blocks(GUIDE)
KNOWN_LANGUAGES = {"python", "sh", "toml", "javascript"}


def test_every_block_is_of_a_kind_this_test_runs() -> None:
    assert {b.language for b in BLOCKS} <= KNOWN_LANGUAGES, [(b.line, b.language) for b in BLOCKS]
    assert sum(b.language == "python" for b in BLOCKS) >= 6


@pytest.fixture(scope="module")
def guide_namespace() -> dict[str, Any]:
    # A real module, as the reader's own code is (SQLAlchemy resolves `Mapped[...]` through it)
    module = types.ModuleType("migration_guide")
    sys.modules[module.__name__] = module
    namespace: dict[str, Any] = module.__dict__
    for block in BLOCKS:
        if block.language == "python":
            try:
                exec(compile(block.code, f"{GUIDE}:{block.line}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"the guide's block at line {block.line} failed: {exc!r}") from exc
    return namespace


@pytest.fixture
def guide_server(guide_namespace: dict[str, Any]) -> Iterator[RunningServer]:
    server = RunningServer(guide_namespace["app"]).start()
    yield server
    server.stop()


async def test_the_guides_app_serves_both_protocols(guide_server: RunningServer) -> None:
    async with connect(f"ws://127.0.0.1:{guide_server.port}/api/ws?ticket_id=45") as old:
        history = json.loads(await old.recv())
        assert history["type"] == "ticket_history"
        new = await Client.open(guide_server.ws_url())
        await new.subscribe("ticket:45")
        reply = await rest(guide_server, "POST", "/api/tickets/45/replies", {"body": "hello"})
        assert json.loads(await asyncio.wait_for(old.recv(), 10)) == {"type": "new_reply", "ticket_id": 45,
                                                                      "reply": reply}
        event = await new.expect("reply_posted")
        assert event["data"] == reply
        await rest(guide_server, "POST", "/api/tickets/45/close")
        assert json.loads(await asyncio.wait_for(old.recv(), 10)) == {"type": "ticket_closed", "id": 45,
                                                                      "status": "closed"}
        closed = await new.expect("ticket_closed")
        assert closed["topics"] == ["ticket:45", "tickets"]
        # Through the transactional outbox: the change and its events committed together.
        await rest(guide_server, "POST", "/api/tickets/45/assign", {"assignee_id": "u7", "close": "yes"})
        # in the order they were staged: the route's own, then the decorator's
        assert json.loads(await asyncio.wait_for(old.recv(), 10)) == {"type": "ticket_closed", "id": 45,
                                                                      "status": "closed"}
        assert json.loads(await asyncio.wait_for(old.recv(), 10)) == {"type": "ticket_assigned", "id": 45,
                                                                      "assignee_id": "u7"}
        assert (await new.expect("ticket_closed"))["data"] == {"id": 45, "status": "closed"}
        assigned = await new.expect("ticket_assigned")
        assert assigned["data"] == {"id": 45, "assignee_id": "u7"}
        published = guide_server.runtime.registry.get_sample_value(
            "wsmigrate_events_published_total", {"event_type": "ticket_assigned", "origin": "outbox"})
        assert published == 1
        await new.close()


async def test_the_guides_commands_run_against_its_app(guide_server: RunningServer,
                                                       guide_namespace: dict[str, Any]) -> None:
    token = guide_namespace["settings"].admin_token
    env = {**os.environ, "WSMIGRATE_ADMIN_TOKEN": token}
    ran = 0
    for block in BLOCKS:
        if block.language != "sh":
            continue
        for command in shell_commands(block):
            words = shlex.split(command)
            if words[0] == "pip":  # the extras it names must exist
                extras = [w.split("[", 1)[1].rstrip("]'") for w in words if "[" in w]
                optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
                assert all(extra in optional for extra in extras), command
                continue
            assert words[0] == "wsmigrate", f"line {block.line}: {command}"
            result = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "wsmigrate", *words[1:], "--url", guide_server.http],
                capture_output=True, text=True, timeout=60, env=env)
            assert result.returncode == 0, f"{command}: {result.stderr}"
            ran += 1
    assert ran >= 4


def test_the_guides_flags_document_is_valid_for_its_catalogue(guide_namespace: dict[str, Any]) -> None:
    documents = [b for b in BLOCKS if b.language == "toml"]
    assert documents
    for block in documents:
        parse_document(block.code, fmt="toml", event_types=guide_namespace["catalog"].names)


async def test_the_guides_view_endpoints_hand_out_positions_a_subscription_follows_without_a_gap(
    guide_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=guide_server.http, timeout=10) as http:
        view = (await http.get("/api/tickets/45/view")).raise_for_status()
        listed = (await http.get("/api/tickets/45/replies")).raise_for_status()
        since = view.json()["positions"]["ticket:45"]
        assert json.loads(view.headers["Wsmigrate-Positions"]) == {"ticket:45": since}
        assert json.loads(listed.headers["Wsmigrate-Positions"]) == {"ticket:45": since}
        assert isinstance(listed.json(), list)  # the old body, unchanged
        assert (await http.get("/api/tickets/0/view")).status_code == 404  # outside the topic grammar
        # A reply posted after the snapshot, before the subscription: replayed from the position.
        reply = (await http.post("/api/tickets/45/replies", json={"body": "between"})).raise_for_status().json()
    client = await Client.open(guide_server.ws_url())
    ack = await client.subscribe("ticket:45", since={"ticket:45": since})
    assert ack["positions"]["ticket:45"]["recovered"] is True
    event = await client.expect("reply_posted")
    assert event["data"]["id"] == reply["id"]
    assert event["seq"] == since["seq"] + 1
    await client.close()


def test_the_guides_browser_snippets_are_valid_javascript(tmp_path: Any) -> None:
    snippets = [b for b in BLOCKS if b.language == "javascript"]
    assert snippets
    for block in snippets:
        module = tmp_path / f"block-{block.line}.mjs"
        # The snippet as the body of an async function: its free names are the view's own.
        module.write_text(f"export async function snippet(client, id, render, reload) {{\n{block.code}\n}}\n")
        checked = subprocess.run(["node", "--check", str(module)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"the guide's block at line {block.line}: {checked.stderr}"
