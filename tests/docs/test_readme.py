"""README.md, executed: the adoption snippet declares an app that really serves both protocols."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from tests.docs.markdown import ROOT, code_blocks
from tests.support import Client, RunningServer

README = ROOT / "README.md"


async def test_the_readme_adoption_snippet_serves_both_protocols() -> None:
    (block,) = [b for b in code_blocks(README) if b.language == "python"]
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(block.code, f"{README}:{block.line}", "exec"), namespace)
    server = RunningServer(namespace["app"]).start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/api/ws?order_id=5") as old:
            new = await Client.open(server.ws_url())
            await new.subscribe("order:5")
            frame = {"type": "order_shipped", "order_id": 5, "carrier": "post"}
            server.run(namespace["broadcast_to_order"](5, frame))
            assert json.loads(await asyncio.wait_for(old.recv(), 10)) == frame
            event = await new.expect("order_shipped")
            assert event["data"] == {"order_id": 5, "carrier": "post"}
            await new.close()
    finally:
        server.stop()


def lay_out_like_make_run(directory: Path, demo_token: str, admin_token: str) -> None:
    (directory / "var").mkdir()
    (directory / "var" / "demo-token").write_text(demo_token + "\n")
    (directory / "var" / "admin-token").write_text(admin_token + "\n")
    (directory / ".venv").symlink_to(sys.prefix)  # the virtual environment running this suite


async def run_like_a_reader(script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Runs the block as a reader would: the websockets session stays open until its first frame
    has been seen (a reader sees `subscribed`, then presses Ctrl-D), so the session's end never
    races the server's answer."""
    process = await asyncio.create_subprocess_exec(
        "bash", "-e", "-o", "pipefail", "-c", script, cwd=cwd, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    errors = asyncio.ensure_future(process.stderr.read())
    out = b""
    while b'"subscribed"' not in out and (chunk := await process.stdout.read(4096)):
        out += chunk
    process.stdin.close()  # the reader's Ctrl-D
    out += await process.stdout.read()
    return await process.wait(), out.decode(), (await errors).decode()


async def test_the_quick_start_commands_run_as_written_against_a_server_like_make_run(
    server_factory: Any, tmp_path: Path,
) -> None:
    """The terminal block of the quick start, in a directory laid out as after `make run` (the
    tokens in var/, the virtual environment in .venv), against a server with `make run`'s settings;
    only its address is this test's own port instead of 8000."""
    (block,) = [b for b in code_blocks(README) if b.language == "sh" and "var/demo-token" in b.code]
    demo, admin = "readme-demo-token", "readme-admin-token"
    server = server_factory(auth=True, dev_mode=True, demo_token=demo, admin_token=admin, probes=True)
    lay_out_like_make_run(tmp_path, demo, admin)
    address = f"127.0.0.1:{server.port}"
    script = block.code.replace("127.0.0.1:8000", address).replace("localhost:8000", address)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WSMIGRATE_")},
           "WSMIGRATE_URL": server.http, "PYTHONPATH": str(ROOT)}
    returncode, out, err = await asyncio.wait_for(run_like_a_reader(script, tmp_path, env), 120)
    assert returncode == 0, out + err
    assert "Traceback" not in out + err
    assert '"subscribed"' in out  # the websockets session
    assert '"name":"Ada"' in out  # the curl's answer
    assert "agent_created          shadow" in out  # flags set
    assert out.count("sockets/nav") == 2  # both simulations' reports
    assert "agent_created: not safe: only" in out  # the report's verdicts
    assert out.rstrip().endswith("promoted live -> complete")  # the walk from off to complete
