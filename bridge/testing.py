"""Helpers for users' own dual-path comparison tests."""

from __future__ import annotations

from collections.abc import Iterable

from wsmigrate.bridge.comparator import Comparator
from wsmigrate.bridge.ops.report import FAILURES


def assert_no_divergence(
    comparator: Comparator, *, event_types: Iterable[str] | None = None, min_compared: int = 1
) -> dict[str, int]:
    """Close every open comparison and fail loudly on any divergence between the paths.

    Fails on mismatches, missing or duplicated deliveries, late arrivals, comparisons skipped for
    capacity (the comparison would be incomplete), and on fewer than `min_compared` compared pairs
    per type (so a test that compared nothing cannot pass). Returns the match count per type.
    """
    comparator.flush()
    wanted = set(event_types) if event_types is not None else set(comparator.outcomes) | set(comparator.skipped)
    problems: list[str] = []
    matches: dict[str, int] = {}
    for event_type in sorted(wanted):
        outcomes = comparator.outcomes.get(event_type, {})
        matches[event_type] = outcomes.get("match", 0)
        for outcome in (*FAILURES, "late"):
            if outcomes.get(outcome):
                problems.append(f"{event_type}: {outcomes[outcome]} {outcome}")
        if comparator.skipped.get(event_type, {}).get("capacity"):
            problems.append(f"{event_type}: {comparator.skipped[event_type]['capacity']} skipped for capacity")
        compared = sum(outcomes.get(o, 0) for o in ("match", *FAILURES))
        if compared < min_compared:
            problems.append(f"{event_type}: only {compared} compared pairs (need {min_compared})")
    if problems:
        samples = "\n".join(f"  {s['outcome']}: {s['event_type']} {s['event_id']} -> {s['recipient']}"
                            for s in list(comparator.samples)[-5:])
        raise AssertionError("the two paths diverged:\n  " + "\n  ".join(problems)
                             + (f"\nlast samples:\n{samples}" if samples else ""))
    return matches
