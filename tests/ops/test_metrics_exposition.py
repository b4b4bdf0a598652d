"""The real `/metrics` output: valid for promtool, and every family documented for operators."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import httpx

from tests.ops.prometheus_server import OPS, require_binary
from tests.ops.traffic import agent_traffic
from tests.support import RunningServer

ServerFactory = Callable[..., RunningServer]

DOCS = OPS.parent / "docs" / "operations.md"


def scrape(server_factory: ServerFactory) -> str:
    server = server_factory()
    agent_traffic(server)
    response = httpx.get(f"{server.http}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


def test_metrics_output_passes_promtool_check_metrics(server_factory: ServerFactory) -> None:
    text = scrape(server_factory)
    assert re.search(r'^wsmigrate_path_events_accepted_total\{event_type="agent_created",path="unified"\} [1-9]',
                     text, re.MULTILINE), "the traffic did not reach the counters"
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_family_is_documented(server_factory: ServerFactory) -> None:
    families = re.findall(r"^# TYPE (wsmigrate_\w+) ", scrape(server_factory), re.MULTILINE)
    assert len(families) >= 20
    docs = DOCS.read_text()
    undocumented = [name for name in families if f"`{name}`" not in docs]
    assert undocumented == [], f"add these to the Metrics table of {DOCS.relative_to(OPS.parent)}"
