"""Parity report: per event type, is the unified path proven to deliver what the legacy one did?

Pure functions over a Prometheus text exposition (what `GET /metrics` returns, whichever worker or
host answered), so `wsmigrate report` and `wsmigrate promote` judge exactly the numbers operators
see on their dashboards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from wsmigrate.bridge.stages import STAGE_ORDER, Stage

FAILURES = ("mismatch_payload", "missing_legacy", "missing_unified", "duplicate_legacy", "duplicate_unified")
Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class Thresholds:
    min_compared: int = 10_000
    min_consistency: float = 99.9


@dataclass
class TypeReport:
    event_type: str
    stage: str = "off"
    published: float = 0.0
    delivered: dict[str, float] = field(default_factory=lambda: {"legacy": 0.0, "unified": 0.0})
    outcomes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    capacity_skips: float = 0.0
    round_trips: dict[str, float] = field(default_factory=lambda: {"exact": 0.0, "lossy": 0.0})
    recipients_only: float = 0.0  # comparisons of events with no application frame (`@publish_event`)
    host_stages: dict[str, str] = field(default_factory=dict)  # host -> its stage ("mixed": its workers differ)

    @property
    def hosts_disagree(self) -> bool:
        return len(set(self.host_stages.values())) > 1 or "mixed" in self.host_stages.values()

    def host_stage_text(self) -> str:
        return ", ".join(f"{host} {stage}" for host, stage in self.host_stages.items())

    @property
    def matches(self) -> float:
        return self.outcomes["match"]

    @property
    def missing(self) -> float:
        return self.outcomes["missing_legacy"] + self.outcomes["missing_unified"]

    @property
    def mismatches(self) -> float:
        outcomes = self.outcomes
        return outcomes["mismatch_payload"] + outcomes["duplicate_legacy"] + outcomes["duplicate_unified"]

    @property
    def compared(self) -> float:
        return self.matches + sum(self.outcomes[o] for o in FAILURES)

    @property
    def consistency(self) -> float | None:
        return 100.0 * self.matches / self.compared if self.compared else None

    def verdict(self, thresholds: Thresholds) -> tuple[bool, str]:
        """(safe, reason) for moving this type to its next stage."""
        if self.hosts_disagree:
            return False, f"no verdict: the hosts disagree on the stage ({self.host_stage_text()})"
        stage = Stage(self.stage)
        if stage is Stage.COMPLETE:
            return False, "already complete"
        lossy = self.round_trips["lossy"]
        if stage is Stage.OFF:
            if lossy:
                return False, f"not safe: {lossy:.0f} lossy translation round trips (fix the translation row)"
            return True, "safe to promote (to shadow: comparison starts there)"
        reasons = []
        if lossy:
            reasons.append(f"{lossy:.0f} lossy translation round trips (fix the translation row)")
        if self.missing:
            reasons.append(f"{self.missing:.0f} missing")
        if self.capacity_skips:
            reasons.append(f"{self.capacity_skips:.0f} observations skipped for capacity (comparison incomplete)")
        if self.compared < thresholds.min_compared:
            reasons.append(f"only {self.compared:.0f} compared deliveries (need {thresholds.min_compared})")
        consistency = self.consistency
        if consistency is not None and consistency < thresholds.min_consistency:
            reasons.append(f"consistency {consistency:.3f}% < {thresholds.min_consistency}%")
        return (False, "not safe: " + "; ".join(reasons)) if reasons else (True, "safe to promote")


def parse_samples(text: str) -> Samples:
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), float(sample.value)))
    return samples


def declared_event_types(samples: Samples) -> list[str]:
    """The event types a server declares, read from its exposition: every declared type has its
    `wsmigrate_event_type_stage` series from start-up on, so a client needs no catalogue of its own.
    `unknown` (legacy frames without a type) and wsmigrate's own types (the probe) are not the
    application's and are left out."""
    seen: dict[str, None] = {}
    for labels, _ in samples.get("wsmigrate_event_type_stage", []):
        name = labels.get("event_type")
        if name and name != "unknown" and not name.startswith("wsmigrate_"):
            seen.setdefault(name)
    return list(seen)


def legacy_only_broadcasts(text: str) -> dict[str, float]:
    """Per legacy frame type that carries no event type, how many broadcasts went out the old way
    (`undeclared`: frame types the translations do not know). Every declared legacy-only frame type
    is listed, at 0 too: until each is rebuilt on the bus, the legacy path cannot be retired."""
    counts: dict[str, float] = {}
    for labels, value in parse_samples(text).get("wsmigrate_legacy_only_broadcasts_total", []):
        frame_type = labels.get("frame_type", "")
        counts[frame_type] = counts.get(frame_type, 0.0) + value
    return counts


def render_legacy_only(counts: dict[str, float]) -> str:
    rows = {k: v for k, v in counts.items() if k != "undeclared" or v}
    if not rows:
        return "legacy-only frames: none (nothing but the event types above keeps the legacy path)"
    listed = ", ".join(f"{k} ({v:.0f} broadcasts)" for k, v in rows.items())
    return f"legacy-only frames, which still block retiring the legacy path: {listed}"


def build_report(text: str, event_types: Sequence[str] | None = None) -> dict[str, TypeReport]:
    """Per event type (`event_types`, or the ones the exposition declares), its parity numbers."""
    samples = parse_samples(text)
    names = declared_event_types(samples) if event_types is None else event_types
    reports = {name: TypeReport(name) for name in names}

    def each(name: str) -> list[tuple[dict[str, str], float]]:
        return [(labels, value) for labels, value in samples.get(name, []) if labels.get("event_type") in reports]

    for event_type, votes in _stage_votes(each("wsmigrate_event_type_stage")).items():
        reports[event_type].stage = max(votes, key=lambda s: (votes[s], -STAGE_ORDER.index(Stage(s))))
    for labels, value in each("wsmigrate_events_published_total"):
        reports[labels["event_type"]].published += value
    for labels, value in each("wsmigrate_recipient_deliveries_total"):
        if labels.get("outcome") == "sent":
            reports[labels["event_type"]].delivered[labels["path"]] += value
    for labels, value in each("wsmigrate_comparisons_total"):
        reports[labels["event_type"]].outcomes[labels["outcome"]] += value
    for labels, value in each("wsmigrate_comparisons_recipients_only_total"):
        reports[labels["event_type"]].recipients_only += value
    for labels, value in each("wsmigrate_translation_roundtrips_total"):
        if labels.get("outcome") in ("exact", "lossy"):
            reports[labels["event_type"]].round_trips[labels["outcome"]] += value
    for labels, value in each("wsmigrate_comparisons_skipped_total"):
        if labels.get("reason") == "capacity":
            reports[labels["event_type"]].capacity_skips += value
    return reports


def _stage_votes(samples: list[tuple[dict[str, str], float]]) -> dict[str, dict[str, float]]:
    """Per event type, how many workers report each stage (a worker exports 1 for its stage)."""
    votes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in samples:
        votes[labels["event_type"]][labels["stage"]] += value
    return votes


def build_fleet_report(expositions: Mapping[str, str], event_types: Sequence[str] | None = None,
                       ) -> dict[str, TypeReport]:
    """`build_report` over several hosts (`{host: its /metrics text}`), with each host's own stage:
    where the hosts, or the workers of one host, are not all in one stage, `hosts_disagree` and the
    verdict is withheld (a majority would judge a move some hosts are not making)."""
    reports = build_report("\n".join(expositions.values()), event_types)
    for host, text in expositions.items():
        stages = _stage_votes([(labels, value) for labels, value in parse_samples(text).get(
            "wsmigrate_event_type_stage", []) if labels.get("event_type") in reports])
        for event_type, votes in stages.items():
            present = [stage for stage, count in votes.items() if count > 0]
            reports[event_type].host_stages[host] = present[0] if len(present) == 1 else "mixed"
    return reports


def render(reports: dict[str, TypeReport], thresholds: Thresholds) -> str:
    head = (f"{'event type':<22} {'stage':<9} {'published':>10} {'legacy sent':>12} {'unified sent':>13} "
            f"{'matches':>9} {'missing':>8} {'mismatch':>9} {'consistency':>12} {'lossy':>6}")
    lines = [head, "-" * len(head)]
    for report in reports.values():
        consistency = "-" if report.consistency is None else f"{report.consistency:.3f}%"
        stage = "mixed" if report.hosts_disagree else report.stage
        lines.append(
            f"{report.event_type:<22} {stage:<9} {report.published:>10.0f} {report.delivered['legacy']:>12.0f} "
            f"{report.delivered['unified']:>13.0f} {report.matches:>9.0f} {report.missing:>8.0f} "
            f"{report.mismatches:>9.0f} {consistency:>12} {report.round_trips['lossy']:>6.0f}")
    lines.append("")
    for report in reports.values():
        lines.append(f"{report.event_type}: {report.verdict(thresholds)[1]}")
        if report.recipients_only:
            lines.append(f"  {report.recipients_only:.0f} of {report.compared:.0f} comparisons are of events published "
                         "on the bus: recipients were compared, not payloads (both paths render those the same way)")
    return "\n".join(lines)
