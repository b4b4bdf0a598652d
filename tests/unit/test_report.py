"""The parity report over a Prometheus exposition (pure)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from examples.chat.declaration import ChatEvent
from wsmigrate.bridge.ops.report import Thresholds, build_report
from wsmigrate.metrics import WsMetrics


def exposition(matches: int, missing: int = 0, stage: str = "shadow") -> str:
    metrics = WsMetrics(CollectorRegistry(), event_types=[t.value for t in ChatEvent])
    metrics.set_stage("message_created", stage)
    metrics.comparisons.labels("message_created", "match").inc(matches)
    metrics.comparisons.labels("message_created", "missing_unified").inc(missing)
    metrics.recipient_deliveries.labels("message_created", "legacy", "sent").inc(matches + missing)
    return generate_latest(metrics.registry).decode()


def test_verdicts() -> None:
    thresholds = Thresholds(min_compared=100, min_consistency=99.9)
    assert build_report(exposition(100))["message_created"].verdict(thresholds) == (True, "safe to promote")
    safe, reason = build_report(exposition(1000, missing=1))["message_created"].verdict(thresholds)
    assert not safe
    assert "1 missing" in reason
    safe, reason = build_report(exposition(10))["message_created"].verdict(thresholds)
    assert "only 10 compared deliveries (need 100)" in reason
    assert build_report(exposition(0, stage="off"))["message_created"].verdict(thresholds)[0]


def test_several_hosts_add_up() -> None:
    report = build_report(exposition(60) + exposition(40))["message_created"]
    assert report.matches == 100
    assert report.delivered["legacy"] == 100
    assert report.stage == "shadow"
    assert report.consistency == 100.0
