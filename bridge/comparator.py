"""The dual-path comparator: proof, per event type, that the new path delivers what the old one did.

In `shadow` and `live` both paths report, for each legacy recipient, what they sent or would have
sent: (event_id, recipient, payload). Each (event_id, recipient) pair is decided once, when its
window (default 5 s) closes:

| seen on                       | outcome                                   |
|-------------------------------|-------------------------------------------|
| both, once each, same digest  | `match` (or `ignored` by a per-type hook) |
| both, digests differ          | `mismatch_payload` (or `ignored`)         |
| one path twice or more        | `duplicate_legacy` / `duplicate_unified`  |
| legacy only / unified only    | `missing_unified` / `missing_legacy`      |
| after the pair was decided    | `late` (counted once per arrival)         |

Deciding at window close rather than at the second observation is what lets a duplicate be seen
at all, and it guarantees exactly one outcome per pair. Memory is bounded: at most `capacity` open
pairs; an event that does not fit is skipped as a whole (all its observations, on both paths) and
counted as `comparisons_skipped{reason="capacity"}`, so "zero mismatches" can never be vacuous and
an overflow never reads as a false `missing`. Sampling (`sample_rate`) is by a hash of the event id, so
both paths sample the same pairs.

Payloads are compared as canonical JSON (keys sorted), so the legacy path's frame, exactly as the
application built it, and the unified path's frame, rendered from the event by the translation,
match when they carry the same fields and values in any key order, and only then. A failed
comparison keeps a sample (`samples`, `/api/admin/mismatches`) with both payloads and, for a
`mismatch_payload`, the fields that differ.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsmigrate.bridge.frame_diff import PAYLOAD_SAMPLE_CHARS, canonical, text_differences
from wsmigrate.metrics import WsMetrics
from wsmigrate.unified import Publication

Clean = Callable[[dict[str, Any]], dict[str, Any]]
Ignore = Callable[[str, str], bool]
DEFAULT_WINDOW_S = 5.0
DEFAULT_CAPACITY = 200_000
SAMPLE_RING = 100
DIGEST_CACHE = 1024  # one event's frame is the same string for all its recipients: digested once


@dataclass(slots=True)
class _Pair:
    event_type: str
    deadline: float
    counts: dict[str, int] = field(default_factory=dict)
    digests: dict[str, bytes] = field(default_factory=dict)
    payloads: dict[str, str] = field(default_factory=dict)
    recipients_only: bool = False  # no application frame: both paths rendered the same way


class Comparator:
    """Pairs up what the two paths delivered to each legacy recipient (see module docstring)."""

    def __init__(
        self,
        *,
        metrics: WsMetrics | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        capacity: int = DEFAULT_CAPACITY,
        sample_rate: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.window_s = window_s
        self.capacity = capacity
        self.sample_rate = sample_rate
        self.clock = clock
        self.clean: dict[str, Clean] = {}
        self.ignore: dict[str, Ignore] = {}
        self._open: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._decided: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Events skipped for capacity: every later observation of them is skipped too, so a pair
        # is never half-recorded (which would read as a false `missing`).
        self._skipped_events: OrderedDict[str, None] = OrderedDict()
        self.samples: deque[dict[str, Any]] = deque(maxlen=SAMPLE_RING)
        self.outcomes: dict[str, dict[str, int]] = {}
        self.skipped: dict[str, dict[str, int]] = {}
        self._digests: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.recipients_only: dict[str, int] = {}

    # -- hooks -----------------------------------------------------------------------------------

    def add_clean(self, event_type: str, hook: Clean) -> None:
        """Normalise a payload before digesting (drop fields that legitimately differ)."""
        self.clean[event_type] = hook

    def add_ignore(self, event_type: str, hook: Ignore) -> None:
        """`hook(legacy_payload, unified_payload)` True marks a known, accepted difference."""
        self.ignore[event_type] = hook

    # -- observations ----------------------------------------------------------------------------

    def observe(self, publication: Publication, path: str, recipient: str, payload: str, sent: bool) -> None:
        self.record(publication.event.event_id, publication.event_type, path, recipient, payload,
                    recipients_only=publication.ingress.source_frame is None)

    def record(self, event_id: str, event_type: str, path: str, recipient: str, payload: str, *,
               recipients_only: bool = False) -> None:
        """One path's frame for one recipient (the observer entry point, also usable directly).

        `recipients_only`: the event has no application frame (published on the bus), so both
        paths rendered its payload the same way and only the recipients are really compared."""
        # No expiry here: both paths observe an event inside one synchronous bus dispatch, and a
        # stall in the middle of it (a GC pause, a busy machine) must never close a pair between
        # its two halves. Windows close only between dispatches (`expire`, run by a task).
        now = self.clock()
        if self.sample_rate < 1.0 and (zlib.crc32(event_id.encode()) % 10_000) >= self.sample_rate * 10_000:
            self._skip(event_type, "sampled_out")
            return
        if event_id in self._skipped_events:
            self._skip(event_type, "capacity")
            return
        key = (event_id, recipient)
        if key in self._decided:
            self._outcome(event_type, "late")
            return
        pair = self._open.get(key)
        if pair is None:
            if len(self._open) >= self.capacity:
                self._skipped_events[event_id] = None
                if len(self._skipped_events) > self.capacity:
                    self._skipped_events.popitem(last=False)
                self._skip(event_type, "capacity")
                return
            pair = _Pair(event_type=event_type, deadline=now + self.window_s, recipients_only=recipients_only)
            self._open[key] = pair
        pair.counts[path] = pair.counts.get(path, 0) + 1
        if path not in pair.digests:
            pair.digests[path] = self._digest(event_type, payload)
            pair.payloads[path] = payload

    def _digest(self, event_type: str, payload: str) -> bytes:
        key = (event_type, payload)
        cached = self._digests.get(key)
        if cached is not None:
            return cached
        hook = self.clean.get(event_type)
        if hook is not None:
            text = json.dumps(hook(json.loads(payload)), sort_keys=True, separators=(",", ":"))
        else:
            text = canonical(payload)
        digest = self._digests[key] = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if len(self._digests) > DIGEST_CACHE:
            self._digests.popitem(last=False)
        return digest

    # -- decisions -------------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> int:
        """Decide every pair whose window has closed; returns how many were decided."""
        now = self.clock() if now is None else now
        decided = 0
        while self._open:
            key, pair = next(iter(self._open.items()))
            if pair.deadline > now:
                break
            self._open.popitem(last=False)
            self._decide(key, pair)
            decided += 1
        return decided

    def flush(self) -> int:
        """Decide every open pair now (shutdown, reports and tests)."""
        decided = 0
        while self._open:
            key, pair = self._open.popitem(last=False)
            self._decide(key, pair)
            decided += 1
        return decided

    def _decide(self, key: tuple[str, str], pair: _Pair) -> None:
        self._decided[key] = None
        if len(self._decided) > self.capacity:
            self._decided.popitem(last=False)
        legacy, unified = pair.counts.get("legacy", 0), pair.counts.get("unified", 0)
        if legacy > 1:
            outcome = "duplicate_legacy"
        elif unified > 1:
            outcome = "duplicate_unified"
        elif not unified:
            outcome = "missing_unified"
        elif not legacy:
            outcome = "missing_legacy"
        elif pair.digests["legacy"] == pair.digests["unified"]:
            outcome = "match"
        else:
            outcome = "mismatch_payload"
        if outcome == "mismatch_payload":
            hook = self.ignore.get(pair.event_type)
            if hook is not None and hook(pair.payloads.get("legacy", ""), pair.payloads.get("unified", "")):
                outcome = "ignored"
        self._outcome(pair.event_type, outcome)
        if pair.recipients_only:
            self.recipients_only[pair.event_type] = self.recipients_only.get(pair.event_type, 0) + 1
            if self.metrics:
                self.metrics.comparisons_recipients_only.labels(pair.event_type).inc()
        if outcome not in ("match", "ignored"):
            legacy_text, unified_text = pair.payloads.get("legacy"), pair.payloads.get("unified")
            sample: dict[str, Any] = {
                "event_id": key[0], "recipient": key[1], "event_type": pair.event_type, "outcome": outcome,
                "counts": dict(pair.counts), "at": time.time(),
                "legacy": None if legacy_text is None else legacy_text[:PAYLOAD_SAMPLE_CHARS],
                "unified": None if unified_text is None else unified_text[:PAYLOAD_SAMPLE_CHARS],
            }
            if outcome == "mismatch_payload" and legacy_text is not None and unified_text is not None:
                sample["differences"] = text_differences(legacy_text, unified_text)
            self.samples.append(sample)

    def _outcome(self, event_type: str, outcome: str) -> None:
        per_type = self.outcomes.setdefault(event_type, {})
        per_type[outcome] = per_type.get(outcome, 0) + 1
        if self.metrics:
            self.metrics.comparisons.labels(event_type, outcome).inc()

    def _skip(self, event_type: str, reason: str) -> None:
        per_type = self.skipped.setdefault(event_type, {})
        per_type[reason] = per_type.get(reason, 0) + 1
        if self.metrics:
            self.metrics.comparisons_skipped.labels(event_type, reason).inc()

    @property
    def open_pairs(self) -> int:
        return len(self._open)
