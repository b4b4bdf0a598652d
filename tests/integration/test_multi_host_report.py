"""`wsmigrate report` and `promote` over several hosts: each host's stage is shown when they
disagree, no verdict is given until they agree, a silent host is named, and promote moves them all."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.conftest import ServerFactory
from tests.ports import bind_free_port
from tests.support import ADMIN_TOKEN, rest, set_stage


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wsmigrate", *args], capture_output=True, text=True, timeout=30)


async def test_hosts_in_different_stages_get_no_verdict_a_silent_host_is_named_and_promote_moves_all(
    server_factory: ServerFactory,
) -> None:
    first = server_factory(admin_token=ADMIN_TOKEN)
    second = server_factory(admin_token=ADMIN_TOKEN)  # its own flags file: the hosts can disagree
    await set_stage(first, "message_created", "shadow")
    urls = ["--url", first.http, "--url", second.http]

    report = await asyncio.to_thread(cli, "report", *urls)
    assert report.returncode == 0, report.stderr
    row = next(line for line in report.stdout.splitlines() if line.startswith("message_created "))
    assert row.split()[1] == "mixed"
    assert (f"message_created: no verdict: the hosts disagree on the stage ({first.http} shadow, {second.http} off)"
            in report.stdout)
    refused = await asyncio.to_thread(cli, "promote", "message_created", *urls, "--token", ADMIN_TOKEN,
                                      "--min-compared", "0")
    assert refused.returncode == 1
    assert "the hosts disagree on the stage" in refused.stderr

    closed = bind_free_port()
    silent = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    unreachable = await asyncio.to_thread(cli, "report", *urls, "--url", silent)
    assert unreachable.returncode == 1  # failed (docs/operations.md, "Command line")
    assert unreachable.stderr.startswith(f"wsmigrate: cannot reach {silent}: nothing answers there")
    assert len(unreachable.stderr.strip().splitlines()) == 1

    await set_stage(second, "message_created", "shadow")
    agreed = await asyncio.to_thread(cli, "report", *urls)
    assert "no verdict" not in agreed.stdout
    moved = await asyncio.to_thread(cli, "promote", "message_created", *urls, "--token", ADMIN_TOKEN,
                                    "--min-compared", "0")
    assert moved.returncode == 0, moved.stderr
    for server in (first, second):
        view = await rest(server, "GET", "/api/admin/flags", token=ADMIN_TOKEN)
        assert view["types"]["message_created"]["stage"] == "live"
