"""The alert rules, evaluated by a real Prometheus, fire on a real injected loss and stay silent
on a clean run of the same traffic."""

from __future__ import annotations

from typing import Any

from examples.chat.legacy_client import LegacyClient
from tests.support import ADMIN_TOKEN, RunningServer, rest, set_stage
from wsmigrate.unified import Publication


class DropOneUnifiedObservation:
    """A test build of the unified path: the first frame it renders for a legacy socket is lost."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dropped = 0

    def observe(self, publication: Publication, path: str, recipient: str, payload: str, sent: bool) -> None:
        if path == "unified" and not self.dropped:
            self.dropped += 1
            return
        self.inner.observe(publication, path, recipient, payload, sent)


async def drive(server: RunningServer) -> None:
    """Shadow `agent_updated` and send a few updates to an agent a legacy socket follows."""
    await set_stage(server, "agent_updated", "shadow")
    agent = await rest(server, "POST", "/api/agents", {"name": "watched"})
    client = LegacyClient(f"ws://127.0.0.1:{server.port}")
    await client.open_agent(agent["id"])
    for index in range(5):
        await rest(server, "PATCH", f"/api/agents/{agent['id']}", {"name": f"n{index}"})
        await client.expect("agent_updated")
    await client.close()


async def test_events_missing_pages_for_the_faulty_server_only(server_factory: Any, prometheus: Any) -> None:
    faulty: RunningServer = server_factory(admin_token=ADMIN_TOKEN, compare_window_s=0.2)
    clean: RunningServer = server_factory(admin_token=ADMIN_TOKEN, compare_window_s=0.2)
    injected = DropOneUnifiedObservation(faulty.runtime.bridge.observer)
    faulty.runtime.bridge.observer = injected
    prom = prometheus(faulty, clean)
    await drive(faulty)
    await drive(clean)
    assert injected.dropped == 1
    alert = prom.wait_for_alert("WsmigrateEventsMissing", labels={"event_type": "agent_updated",
                                                                   "outcome": "missing_unified"}, timeout=60)
    assert alert["labels"]["instance"] == f"127.0.0.1:{faulty.port}"
    assert alert["labels"]["severity"] == "page"
    # The clean server's comparisons, as Prometheus sees them: every pair matched...
    matched = f'wsmigrate_comparisons_total{{instance="127.0.0.1:{clean.port}",event_type="agent_updated",' \
              f'outcome="match"}} == 5'
    prom.wait_until("the clean server's 5 matches", lambda: prom.query(matched) or None, timeout=30)
    prom.wait_for_rule_evaluation()
    # ...and no alert is pending or firing for it.
    active = [a for a in prom.alerts() if a["labels"].get("instance") == f"127.0.0.1:{clean.port}"]
    assert active == []
