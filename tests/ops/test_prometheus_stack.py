"""A real Prometheus scraping a real wsmigrate server: the alert rules load and stay silent, and every
query of ops/grafana-dashboard.json is valid against the real series."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from tests.ops.prometheus_server import ALERTS_FILE, OPS, PrometheusFactory, PrometheusServer
from tests.ops.traffic import agent_traffic
from tests.support import RunningServer

ServerFactory = Callable[..., RunningServer]
DASHBOARD = OPS / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# What Grafana would put in place of its built-in variables for a short time range.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
# Queries that filter (`> 0`) and so may legitimately be empty on a fresh server: nothing is
# compared while every type is `off`, this traffic has no legacy clients, and the flags never
# change. Every other query must return data (the stage panels too: each type's stage is exported
# as 1 from start-up).
MAY_BE_EMPTY = {
    "Consistency (time range)",
    "Consistency rate",
    "Unified / legacy delivery ratio",
    "annotation: Flag changes",
}
SELECTOR = re.compile(r"\bwsmigrate_\w+(?:\{[^}]*\})?")


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and every Prometheus annotation."""
    found = [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]
    found += [(f"annotation: {a['name']}", a["expr"]) for a in dashboard["annotations"]["list"] if "expr" in a]
    return found


def substitute(expr: str, event_type: str) -> str:
    expr = expr.replace("${event_type}", event_type).replace("$event_type", event_type)
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown variable left in {expr!r}"
    return expr


def started_stack(server_factory: ServerFactory, prometheus: PrometheusFactory) -> tuple[RunningServer,
                                                                                          PrometheusServer]:
    server = server_factory()
    agent_traffic(server)
    prom = prometheus(server)
    prom.wait_for_samples(2)  # rate() and increase() need two samples in their window
    return server, prom


def test_alert_rules_load_healthy_stay_silent_on_a_clean_server_and_see_it_go_down(
    server_factory: ServerFactory, prometheus: PrometheusFactory
) -> None:
    server, prom = started_stack(server_factory, prometheus)
    rules = prom.wait_for_rule_evaluation()

    expected = re.findall(r"^\s*- alert: (\w+)$", ALERTS_FILE.read_text(), re.MULTILINE)
    assert sorted(r["name"] for r in rules if r["type"] == "alerting") == sorted(expected)
    assert [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert [(r["name"], r["state"]) for r in rules if r["state"] != "inactive"] == []
    assert prom.alerts() == []

    # The one fault needing no test build: the server goes away and its alert turns pending.
    server.stop()
    alert = prom.wait_for_alert("WsmigrateTargetDown", state="pending",
                                labels={"instance": f"127.0.0.1:{server.port}"}, timeout=15)
    assert alert["labels"]["severity"] == "warning"


def test_every_dashboard_query_is_valid_against_the_real_series(
    server_factory: ServerFactory, prometheus: PrometheusFactory
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    server, prom = started_stack(server_factory, prometheus)

    # The $event_type variable: label_values(wsmigrate_event_type_stage, event_type).
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "event_type")
    assert variable["query"]["query"] == "label_values(wsmigrate_event_type_stage, event_type)"
    values = prom.api("label/event_type/values", **{"match[]": "wsmigrate_event_type_stage"})
    assert sorted(values) == sorted(server.runtime.metrics.event_types)

    # Every panel and annotation talks to the ${DS_PROMETHEUS} datasource variable.
    assert any(v["name"] == "DS_PROMETHEUS" and v["type"] == "datasource" for v in dashboard["templating"]["list"])
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE, panel["title"]
            assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))

    found = queries(dashboard)
    assert len(found) >= 20
    # One type as a repeated row sees it, and several as the "All" selection renders them.
    for event_type in ("agent_created", "(agent_created|agent_updated)"):
        empty = []
        for where, expr in found:
            result = prom.query(substitute(expr, event_type))  # raises on an invalid query
            if not result and where not in MAY_BE_EMPTY:
                empty.append((where, expr))
        assert empty == [], f"queries over always-present series returned nothing for {event_type}"

        # Filtering queries can hide a misspelt metric or label value: every selector must match.
        selectors = {s for _, expr in found for s in SELECTOR.findall(substitute(expr, event_type))}
        unmatched = sorted(s for s in selectors if not prom.query(f"count({s})"))
        assert unmatched == [], "selectors that match no series"
