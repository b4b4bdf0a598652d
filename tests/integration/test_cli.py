"""The operator commands end like mature tools: one line and a documented exit code (0 ok, 1 refused
or failed, 2 usage, 130 interrupted), JSON for every outcome under `--json`, never a traceback:
with the server down, a wrong token, a malformed URL, an unknown type, a reader that closes the
pipe, and Ctrl-C during `simulate`. Against real servers and real processes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port
from tests.support import ADMIN_TOKEN, RunningServer, rest
from wsmigrate import SettingsError
from wsmigrate.bridge.ops.cli import build_parser
from wsmigrate.bridge.ops.cli_output import CommandError
from wsmigrate.bridge.ops.cli_serve import APP_ENV, load_app
from wsmigrate.bridge.server.settings import Settings

SCENARIO = "examples.chat.simulation:Scenario"
TIMEOUT_S = 60


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSMIGRATE_")}
    return {**env, **extra}


def wsmigrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wsmigrate", *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env or environment())


def one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wsmigrate: ")
    return lines[0]


def nobody_listens() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_version_and_help_for_every_option() -> None:
    result = wsmigrate("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("wsmigrate ")

    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    found += parsers(child)
        return found

    silent = [f"{p.prog} {a.option_strings or a.dest}" for p in parsers(build_parser()) for a in p._actions
              if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert silent == []


def test_serve_with_an_invalid_setting_is_one_line_naming_it_and_exit_2() -> None:
    result = wsmigrate("serve", "--app", "examples.chat.app:app_from_env", "--port", str(free_port()),
                       env=environment(WSMIGRATE_WRITE_COALESCE_MS="-1", WSMIGRATE_HISTORY_SIZE="lots"))
    assert result.returncode == 2
    line = one_clean_line(result)
    assert "WSMIGRATE_WRITE_COALESCE_MS='-1': input should be greater than or equal to 0" in line
    assert "WSMIGRATE_HISTORY_SIZE='lots'" in line


def test_invalid_settings_in_code_name_the_argument_and_are_one_error() -> None:
    with pytest.raises(SettingsError, match=r"^history_size=-1: input should be greater than or equal to 0$"):
        Settings.from_env({}, history_size=-1)
    with pytest.raises(ValueError, match="WSMIGRATE_BUS_READ_INTERVAL_MS='x'"):  # still a ValueError
        Settings.from_env({"WSMIGRATE_BUS_READ_INTERVAL_MS": "x"})


@pytest.mark.parametrize("command", [
    ["report"], ["promote", "message_created"], ["flags", "show", "--admin-token", "t"],
    ["simulate", "--scenario", SCENARIO, "--duration", "1"],
])
async def test_a_server_that_is_down_is_one_line_and_exit_1(command: list[str]) -> None:
    url = nobody_listens()
    result = await asyncio.to_thread(wsmigrate, *command, "--url", url)
    assert result.returncode == 1
    assert one_clean_line(result) == f"wsmigrate: cannot reach {url}: nothing answers there (is the server running?)"
    as_json = await asyncio.to_thread(wsmigrate, *command, "--url", url, "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["ok"] is False  # JSON whatever happened
    # WSMIGRATE_URL is the default of --url
    from_env = await asyncio.to_thread(wsmigrate, *command, env=environment(WSMIGRATE_URL=url))
    assert url in one_clean_line(from_env)


async def test_a_wrong_token_an_unknown_type_and_a_malformed_url(server_factory: Any) -> None:
    server: RunningServer = server_factory(admin_token=ADMIN_TOKEN)
    wrong = await asyncio.to_thread(wsmigrate, "flags", "show", "--url", server.http, "--admin-token", "nope")
    assert wrong.returncode == 1
    assert "refused the admin token (401)" in one_clean_line(wrong)
    from_env = await asyncio.to_thread(wsmigrate, "flags", "show", "--url", server.http,
                                       env=environment(WSMIGRATE_ADMIN_TOKEN=ADMIN_TOKEN))
    assert from_env.returncode == 0, from_env.stderr
    assert from_env.stdout.startswith("revision ")
    unknown = await asyncio.to_thread(wsmigrate, "flags", "set", "nope", "shadow", "--url", server.http,
                                      "--admin-token", ADMIN_TOKEN)
    assert unknown.returncode == 2
    assert "unknown event type 'nope'; declared: agent_created" in one_clean_line(unknown)
    promote_unknown = await asyncio.to_thread(wsmigrate, "promote", "nope", "--url", server.http, "--json")
    assert promote_unknown.returncode == 2
    assert json.loads(promote_unknown.stdout)["declared"][0] == "agent_created"
    malformed = await asyncio.to_thread(wsmigrate, "report", "--url", "localhost:8000")
    assert malformed.returncode == 2
    assert "not a server URL" in one_clean_line(malformed)


async def test_promote_json_for_a_refusal_and_a_promotion(server_factory: Any) -> None:
    server: RunningServer = server_factory(admin_token=ADMIN_TOKEN)
    moved = await asyncio.to_thread(wsmigrate, "promote", "message_created", "--url", server.http,
                                    "--admin-token", ADMIN_TOKEN, "--json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout) | {"reason": "-"} == {
        "ok": True, "promoted": True, "event_type": "message_created", "from": "off", "to": "shadow",
        "moved": [server.http], "reason": "-"}
    refused = await asyncio.to_thread(wsmigrate, "promote", "message_created", "--url", server.http,
                                      "--admin-token", ADMIN_TOKEN, "--json")
    assert refused.returncode == 1
    body = json.loads(refused.stdout)
    assert (body["ok"], body["promoted"], body["from"], body["to"]) == (False, False, "shadow", "live")
    assert "compared deliveries" in body["reason"]
    assert refused.stderr == ""


@pytest.mark.parametrize("command", [["flags", "show"], ["report"], ["report", "--json"]])
def test_a_reader_that_closes_the_pipe_ends_the_output_quietly(server_factory: Any, command: list[str]) -> None:
    server: RunningServer = server_factory(admin_token=ADMIN_TOKEN)
    process = subprocess.Popen([sys.executable, "-m", "wsmigrate", *command, "--url", server.http],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=environment(WSMIGRATE_ADMIN_TOKEN=ADMIN_TOKEN))
    assert process.stdout is not None
    process.stdout.close()  # `| head -0`: nobody reads what the command writes
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0
    assert stderr.decode() == ""
    piped = subprocess.run(f"{sys.executable} -m wsmigrate {' '.join(command)} --url {server.http} | head -1",
                           shell=True, capture_output=True, text=True, timeout=TIMEOUT_S,
                           env=environment(WSMIGRATE_ADMIN_TOKEN=ADMIN_TOKEN))
    assert len(piped.stdout.splitlines()) == 1
    assert piped.stderr == ""


async def test_ctrl_c_during_simulate_prints_the_partial_report_and_cleans_up(server_factory: Any) -> None:
    server: RunningServer = server_factory()
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "wsmigrate", "simulate", "--url", server.http, "--scenario", SCENARIO,
         "--legacy", "2", "--unified", "2", "--duration", "120", "--json", "--progress", "lines"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    assert process.stderr is not None
    started = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), TIMEOUT_S)
    assert started.startswith("simulate: running 2 legacy and 2 unified clients")
    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.to_thread(process.communicate, timeout=TIMEOUT_S)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    assert report["interrupted"] is True
    assert report["stopped_by"] == "interrupt"
    assert report["legacy"]["clients"] == 2
    assert await rest(server, "GET", "/api/agents") == []  # what it created is gone


async def test_simulate_signs_in_on_a_development_server_and_says_so_when_it_cannot(server_factory: Any) -> None:
    dev: RunningServer = server_factory(auth=True, dev_mode=True, demo_token="demo-token-of-the-test")
    result = await asyncio.to_thread(wsmigrate, "simulate", "--url", dev.http, "--scenario", SCENARIO,
                                     "--legacy", "1", "--unified", "1", "--duration", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["legacy"]["errors"] == {}
    assert report["unified"]["errors"] == {}
    closed: RunningServer = server_factory(auth=True)
    refused = await asyncio.to_thread(wsmigrate, "simulate", "--url", closed.http, "--scenario", SCENARIO,
                                      "--duration", "1")
    assert refused.returncode == 1
    assert "requires a user token: --token or WSMIGRATE_TOKEN" in one_clean_line(refused)


async def test_simulate_until_promotable_walks_a_type_from_off_to_complete(server_factory: Any) -> None:
    server: RunningServer = server_factory(admin_token=ADMIN_TOKEN, compare_window_s=0.3)
    result = await asyncio.to_thread(
        wsmigrate, "simulate", "--url", server.http, "--scenario", SCENARIO, "--legacy", "4", "--unified", "2",
        "--until-promotable", "stream_chunk", "--promote", "--min-compared", "40", "--max-duration", "50",
        "--admin-token", ADMIN_TOKEN, "--json", "--progress", "none")
    assert result.returncode == 0, result.stderr
    goal = json.loads(result.stdout)["goal"]
    assert goal["promotions"] == ["off -> shadow", "shadow -> live", "live -> complete"]
    assert goal["reached"] is True
    flags = await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)
    assert flags["types"]["stream_chunk"]["stage"] == "complete"


async def test_simulate_keeps_what_it_created_with_keep_and_says_when_the_goal_was_not_reached(
    server_factory: Any,
) -> None:
    server: RunningServer = server_factory(admin_token=ADMIN_TOKEN)
    kept = await asyncio.to_thread(wsmigrate, "simulate", "--url", server.http, "--scenario", SCENARIO,
                                   "--legacy", "1", "--unified", "1", "--duration", "0.5", "--keep", "--json")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["kept"] is True
    assert len(await rest(server, "GET", "/api/agents")) == 3  # the scenario's agents are still there
    late = await asyncio.to_thread(
        wsmigrate, "simulate", "--url", server.http, "--scenario", SCENARIO, "--legacy", "1", "--unified", "1",
        "--until-promotable", "message_created", "--min-compared", "1000000", "--max-duration", "1.5",
        "--json", "--progress", "none")
    # off -> shadow needs no comparisons: promotable at once; shadow would need a million
    assert late.returncode == 0, late.stderr
    assert json.loads(late.stdout)["goal"]["reached"] is True
    await rest(server, "PUT", "/api/admin/flags/message_created", {"stage": "shadow"}, token=ADMIN_TOKEN)
    missed = await asyncio.to_thread(
        wsmigrate, "simulate", "--url", server.http, "--scenario", SCENARIO, "--legacy", "1", "--unified", "1",
        "--until-promotable", "message_created", "--min-compared", "1000000", "--max-duration", "1.5",
        "--json", "--progress", "none")
    assert missed.returncode == 1  # the time ran out before the numbers allowed it
    goal = json.loads(missed.stdout)["goal"]
    assert (goal["reached"], goal["stage"], goal["promotable"]) == (False, "shadow", False)
    assert "compared deliveries (need 1000000)" in goal["reason"]


def test_serve_loads_an_app_or_a_factory_that_returns_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "adopter_app.py").write_text(
        "from fastapi import FastAPI\n"
        "app = FastAPI(title='instance')\n"
        "def create_app() -> FastAPI:\n"
        "    return FastAPI(title='from factory')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(APP_ENV, "adopter_app:app")
    assert load_app().title == "instance"
    monkeypatch.setenv(APP_ENV, "adopter_app:create_app")
    assert load_app().title == "from factory"
    monkeypatch.setenv(APP_ENV, "adopter_app:missing")
    with pytest.raises(CommandError, match="cannot load --app 'adopter_app:missing'"):
        load_app()
