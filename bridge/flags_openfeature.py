"""`OpenFeatureFlagStore`: the stages come from the team's own flag system, through OpenFeature.

Teams that already run a flag service (LaunchDarkly, Unleash, flagd, Flipt, ConfigCat...) keep it
as the one source of truth: the application sets that service's OpenFeature provider
(`openfeature.api.set_provider(...)`, before wsmigrate starts) and `WSMIGRATE_FLAGS=openfeature`
makes wsmigrate read its flags from it (extra `wsmigrate[openfeature]`). The flags, with the
prefix `WSMIGRATE_OPENFEATURE_PREFIX` (default `wsmigrate`):

| flag | type | meaning (absent: the default) |
|---|---|---|
| `{prefix}.stage.{event_type}` | string | `off` (default), `shadow`, `live` or `complete` |
| `{prefix}.live_percent.{event_type}` | integer | the sticky live cohort of a type in `shadow`, 0-100 (default 0) |
| `{prefix}.force.{event_type}` | boolean | allow the stage flag to skip stages forward (default false) |
| `{prefix}.kill_switch` | boolean | every type `off` (default false) |

Two evaluation contexts. The type's stage (what every event is stamped with at ingress) is the
flag evaluated with the targeting key `wsmigrate:type` and the attribute `wsmigrate_scope = "type"`. A legacy
connection's cohort is the same flag evaluated with its user id as targeting key and
`wsmigrate_scope = "connection"` (also `wsmigrate_kind`): while the type is in `shadow`, a
connection for which the provider answers `live` is in the live cohort, so the provider's own
percentage rollout (flagd `fractional`, a LaunchDarkly or Unleash rollout on the user key) picks
sticky cohorts (`in_live_cohort`, the `TargetedCohorts` seam the dual path asks once per
connection, then again whenever the provider announces a change or the flags change, and every
`cohort_refresh_s` for providers that announce nothing).

The store reads them into the same `FlagsDocument` as every other store, so the rest is unchanged:
the stage is resolved once at ingress and stamped on the event. It re-reads on the provider's
change events and every `poll_interval_s` (for providers that emit none). A value it cannot use
(not a stage, a wrong type, a provider error, a stage skipped without `force`) is not applied: the
last good value stays, the reason is `last_error` (admin API, `/ops`, `/healthz`) and it is
counted (`rejections`, and `wsmigrate_flags_rejections_total` through `on_rejection`). Until
the provider is ready every type is `off`, the safe default.

Writes are refused (`apply` raises `FlagsError` naming the flag to change and where): the
provider's own UI, audit trail and approvals stay the only way to change a stage. Every change
seen from the provider is audited (who: `openfeature:<provider>`) and bumps the revision.

Hooks registered here: the provider's `PROVIDER_READY`, `PROVIDER_CONFIGURATION_CHANGED` and
`PROVIDER_ERROR` events (`start`), answered on the event loop; `add_cohort_listener` callbacks
(the dual path's cohort re-evaluation) are called after each of those and every
`cohort_refresh_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails
from openfeature.provider import ProviderStatus

from wsmigrate.bridge.errors import FlagsError
from wsmigrate.bridge.flags import AUDIT_CAPACITY, FlagChange, Listener
from wsmigrate.bridge.stages import FlagsDocument, Stage, TypeFlags, check_transition

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "wsmigrate"
DEFAULT_POLL_S = 0.5
DEFAULT_COHORT_REFRESH_S = 5.0
SCOPE_ATTRIBUTE = "wsmigrate_scope"
# Providers such as LaunchDarkly, GO Feature Flag and Split refuse a context without a key: the
# type's own evaluation has a fixed one, and a rollout rule is kept off it by `wsmigrate_scope`.
TYPE_TARGETING_KEY = "wsmigrate:type"
TYPE_CONTEXT = EvaluationContext(targeting_key=TYPE_TARGETING_KEY, attributes={SCOPE_ATTRIBUTE: "type"})
PROVIDER_EVENTS = (ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
                   ProviderEvent.PROVIDER_ERROR)
T = TypeVar("T")


class OpenFeatureFlagStore:
    """Flags read from an OpenFeature client (see module docstring)."""

    kind = "openfeature"

    def __init__(self, *, event_types: Sequence[str], client: OpenFeatureClient | None = None,
                 domain: str | None = None, prefix: str = DEFAULT_PREFIX,
                 poll_interval_s: float = DEFAULT_POLL_S,
                 cohort_refresh_s: float = DEFAULT_COHORT_REFRESH_S) -> None:
        self.client = client or api.get_client(domain)
        self.event_types = tuple(event_types)
        self.prefix = prefix
        self.poll_interval_s = poll_interval_s
        self.cohort_refresh_s = cohort_refresh_s
        self.last_error: str | None = None
        self.rejections = 0
        self.cohort_errors = 0  # connection evaluations the provider answered with an error
        self.on_rejection: Callable[[], None] | None = None  # the runtime counts them (a metric)
        self._document = FlagsDocument()  # every type off until the provider has answered
        self._audit: deque[dict[str, Any]] = deque(maxlen=AUDIT_CAPACITY)
        self._listeners: list[Listener] = []
        self._cohort_listeners: list[Callable[[], None]] = []
        self._cohort_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the FlagStore seam ------------------------------------------------------------------------

    def current(self) -> FlagsDocument:
        return self._document

    async def apply(self, change: FlagChange, who: str) -> FlagsDocument:
        raise FlagsError(self.refusal(change))

    def refusal(self, change: FlagChange) -> str:
        where = f"the OpenFeature provider {self.provider_name!r}"
        if change.kind == "stage" and change.event_type and change.stage:
            return (f"flags come from {where}: set {self.stage_flag(change.event_type)} to "
                    f"{change.stage.value!r} there (wsmigrate does not write to it)")
        if change.kind in ("kill", "unkill"):
            return f"flags come from {where}: set {self.prefix}.kill_switch to {change.kind == 'kill'} there"
        return f"flags come from {where}: change them there (wsmigrate does not write to it)"

    def audit(self) -> list[dict[str, Any]]:
        return list(self._audit)

    async def audit_log(self) -> list[dict[str, Any]]:
        return self.audit()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)
        listener(self._document)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.refresh()
        for event in PROVIDER_EVENTS:
            self.client.add_handler(event, self._on_provider_event)
        self._task = self._loop.create_task(self._poll(), name="wsmigrate-openfeature-poll")

    async def stop(self) -> None:
        for event in PROVIDER_EVENTS:
            self.client.remove_handler(event, self._on_provider_event)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._loop = None

    # -- reading the provider ----------------------------------------------------------------------

    @property
    def provider_name(self) -> str:
        return str(self.client.provider.get_metadata().name)

    def stage_flag(self, event_type: str) -> str:
        return f"{self.prefix}.stage.{event_type}"

    # -- cohorts: the provider's per-user answer (the TargetedCohorts seam) ------------------------

    def in_live_cohort(self, event_type: str, identity: str, kind: str) -> bool:
        """Whether the provider serves this user's legacy connection `live` while the type is in
        `shadow`: the stage flag evaluated with the user id as targeting key. An error answer keeps
        the connection on the legacy path (counted in `cohort_errors`, logged once per reason)."""
        context = EvaluationContext(targeting_key=identity,
                                    attributes={SCOPE_ATTRIBUTE: "connection", "wsmigrate_kind": kind})
        details = self.client.get_string_details(self.stage_flag(event_type), Stage.OFF.value, context)
        if details.error_code is not None and details.error_code is not ErrorCode.FLAG_NOT_FOUND:
            self.cohort_errors += 1
            reason = f"{details.error_code.value} {details.error_message or ''}".strip()
            if reason != self._cohort_error:
                self._cohort_error = reason
                log.error("cohort of %s for a %s connection not read (%s): it stays on the legacy path",
                          event_type, kind, reason)
            return False
        return details.value == Stage.LIVE.value

    def add_cohort_listener(self, listener: Callable[[], None]) -> None:
        self._cohort_listeners.append(listener)

    def _cohorts_may_have_changed(self) -> None:
        for listener in self._cohort_listeners:
            listener()

    def _on_provider_event(self, _details: EventDetails) -> None:
        """Called from the provider's own worker thread; the re-read happens on the event loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(self._provider_changed)

    def _provider_changed(self) -> None:
        if not self.refresh():  # a new document re-evaluates the cohorts itself
            self._cohorts_may_have_changed()  # targeting may have changed without the type's stage

    async def _poll(self) -> None:
        since_cohorts = 0.0
        while True:
            await asyncio.sleep(self.poll_interval_s)  # the polling period itself
            self.refresh()
            since_cohorts += self.poll_interval_s
            if since_cohorts >= self.cohort_refresh_s:  # for providers that announce no change
                since_cohorts = 0.0
                self._cohorts_may_have_changed()

    def refresh(self) -> bool:
        """Read every flag; apply what is valid, keep the last good value of what is not. True when
        a new document took effect."""
        problems: list[str] = []
        try:
            document = self._read(problems)
        except FlagsError as exc:
            problems.append(str(exc))
            document = self._document
        if problems:
            error = "; ".join(problems)
            if error != self.last_error:
                log.error("flags from OpenFeature not applied: %s", error)
            if error != self.last_error:  # one rejection per new problem, not per re-read of it
                self.rejections += 1
                if self.on_rejection is not None:
                    self.on_rejection()
            self.last_error = error
        else:
            self.last_error = None
        if document == self._document:  # `_read` keeps the revision: any difference is a change
            return False
        self._accept(document)
        return True

    def _read(self, problems: list[str]) -> FlagsDocument:
        status = self.client.get_provider_status()
        if status is not ProviderStatus.READY:
            raise FlagsError(f"the OpenFeature provider {self.provider_name!r} is {status.value.lower()}: "
                             "the flags stay as they were (every type off until it is first ready)")
        previous = self._document
        kill = self._value(self.client.get_boolean_details, f"{self.prefix}.kill_switch", previous.kill_switch,
                           problems, default=False)
        types: dict[str, TypeFlags] = {}
        for event_type in self.event_types:
            before = previous.flags_for(event_type)
            raw_stage = self._value(self.client.get_string_details, self.stage_flag(event_type),
                                    before.stage.value if before.stage else None, problems, default=None)
            percent = self._value(self.client.get_integer_details, f"{self.prefix}.live_percent.{event_type}",
                                  before.live_percent, problems, default=0)
            force = self._value(self.client.get_boolean_details, f"{self.prefix}.force.{event_type}", False,
                                problems, default=False)
            stage = self._stage(event_type, raw_stage, before.stage, force, problems)
            if not 0 <= percent <= 100:
                problems.append(f"{self.prefix}.live_percent.{event_type}: {percent} is not 0-100")
                percent = before.live_percent
            types[event_type] = TypeFlags(stage=stage, live_percent=percent)
        return FlagsDocument(revision=previous.revision, kill_switch=kill, types=types)

    def _stage(self, event_type: str, raw: str | None, before: Stage | None, force: bool,
               problems: list[str]) -> Stage | None:
        if raw is None:
            return None
        try:
            stage = Stage(raw)
        except ValueError:
            problems.append(f"{self.stage_flag(event_type)}: {raw!r} is not a stage (off, shadow, live, complete)")
            return before
        try:
            check_transition(before or Stage.OFF, stage, force=force)
        except FlagsError as exc:
            problems.append(f"{self.stage_flag(event_type)}: {exc} (set {self.prefix}.force.{event_type} to allow it)")
            return before
        return stage

    def _value(self, getter: Callable[..., FlagEvaluationDetails[Any]], key: str, last: T, problems: list[str], *,
               default: T) -> T:
        """The flag's value; its default when the provider does not have the flag; the last good
        value (and a problem) when the provider answered with an error."""
        details = getter(key, default, TYPE_CONTEXT)
        if details.error_code is None:
            return details.value  # type: ignore[no-any-return]
        if details.error_code is ErrorCode.FLAG_NOT_FOUND:
            return default
        problems.append(f"{key}: {details.error_code.value} {details.error_message or ''}".strip())
        return last

    def _accept(self, document: FlagsDocument) -> None:
        previous = self._document
        document = document.model_copy(update={"revision": previous.revision + 1})
        who = f"openfeature:{self.provider_name}"
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        for event_type in self.event_types:
            old, new = _describe(previous.flags_for(event_type)), _describe(document.flags_for(event_type))
            if old != new:  # an absent flag and one reading `off` are the same stage
                self._audit.append({"at": at, "who": who, "change": "provider", "event_type": event_type,
                                    "from": old, "to": new, "force": False,
                                    "revision": document.revision})
        if previous.kill_switch != document.kill_switch:
            self._audit.append({"at": at, "who": who, "change": "provider", "event_type": None,
                                "from": f"kill_switch={previous.kill_switch}",
                                "to": f"kill_switch={document.kill_switch}", "force": False,
                                "revision": document.revision})
        self._document = document
        log.info("flags from OpenFeature: revision %d", document.revision)
        for listener in self._listeners:
            listener(document)
        self._cohorts_may_have_changed()


def _describe(flags: TypeFlags) -> str:
    return f"stage={flags.stage.value if flags.stage else 'off'} live_percent={flags.live_percent}"
