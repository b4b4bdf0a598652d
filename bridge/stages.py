"""Migration stages and the flags document: pure decision logic, no I/O.

| stage      | legacy sockets are served by | the other path                     | compared |
|------------|------------------------------|------------------------------------|----------|
| `off`      | legacy path                  | not computed                       | no       |
| `shadow`   | legacy path                  | unified computes, sends nothing    | yes      |
| `live`     | unified path (compat adapter)| legacy computes, sends nothing     | yes      |
| `complete` | unified path                 | not computed                       | no       |

A type in `shadow` may move a sticky percentage of legacy connections to `live` (`live_percent`):
a connection's bucket is a stable hash of its user (or client) id, so raising the percentage only
ever adds connections to the live cohort.

Precedence when resolving a type's stage: kill switch > per-type pin > cohort > per-type stage >
default stage. The resolved stage is stamped on each event once, at ingress, so a flag change in
flight can never make a socket receive an event twice or not at all: both paths decide from the
same stamp with the same function (`serving_path`).
"""

from __future__ import annotations

import json
import tomllib
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from wsmigrate.bridge.errors import FlagsError


class Stage(StrEnum):
    OFF = "off"
    SHADOW = "shadow"
    LIVE = "live"
    COMPLETE = "complete"


STAGE_ORDER: tuple[Stage, ...] = (Stage.OFF, Stage.SHADOW, Stage.LIVE, Stage.COMPLETE)
Path = Literal["legacy", "unified"]


def effective_stage(stage: Stage, in_live_cohort: bool) -> Stage:
    """A connection in the live cohort of a `shadow` type is served as if the type were `live`."""
    return Stage.LIVE if stage is Stage.SHADOW and in_live_cohort else stage


def serving_path(stage: Stage, in_live_cohort: bool = False) -> Path:
    """Which path writes an event of `stage` to a legacy socket."""
    return "legacy" if effective_stage(stage, in_live_cohort) in (Stage.OFF, Stage.SHADOW) else "unified"


def is_compared(stage: Stage, in_live_cohort: bool = False) -> bool:
    """Whether the path that does not serve computes its frames for the comparator."""
    return effective_stage(stage, in_live_cohort) in (Stage.SHADOW, Stage.LIVE)


def cohort_bucket(identity: str) -> int:
    """A stable bucket in [0, 100) for a user or client id (the same in every process)."""
    return zlib.crc32(identity.encode("utf-8")) % 100


def in_live_cohort(bucket: int, live_percent: int) -> bool:
    return bucket < live_percent


def check_transition(current: Stage, target: Stage, *, force: bool) -> None:
    """Forward moves go one stage at a time unless forced; moving back is always allowed."""
    step = STAGE_ORDER.index(target) - STAGE_ORDER.index(current)
    if step > 1 and not force:
        skipped = ", ".join(s.value for s in STAGE_ORDER[STAGE_ORDER.index(current) + 1 : STAGE_ORDER.index(target)])
        raise FlagsError(f"moving {current.value} -> {target.value} skips {skipped}; use force to override")


# -- the flags document ----------------------------------------------------------------------------


class TypeFlags(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Stage | None = None
    pin: Stage | None = None
    live_percent: int = Field(0, ge=0, le=100)


class FlagsDocument(BaseModel):
    """The whole flag state. `revision` increases with every accepted change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revision: int = Field(0, ge=0)
    kill_switch: bool = False
    default_stage: Stage = Stage.OFF
    types: dict[str, TypeFlags] = Field(default_factory=dict)

    @field_validator("types", mode="before")
    @classmethod
    def _known_types(cls, value: Any, info: ValidationInfo) -> Any:
        """With the application's event types as validation context (`parse_document` passes
        them), a type the catalogue does not declare is an error rather than a silent no-op."""
        known = (info.context or {}).get("event_types")
        if isinstance(value, dict) and known is not None:
            unknown = sorted(str(k) for k in value if k not in known)
            if unknown:
                raise ValueError(f"unknown event types: {', '.join(unknown)}; declared: {', '.join(known)}")
        return value

    def flags_for(self, event_type: str) -> TypeFlags:
        return self.types.get(event_type, TypeFlags())

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What an event of one type gets stamped with at ingress."""

    stage: Stage
    live_percent: int
    revision: int
    source: Literal["kill_switch", "pin", "cohort", "type", "default"]


def resolve(document: FlagsDocument, event_type: str) -> Resolution:
    """Apply precedence: kill switch > pin > cohort > per-type stage > default stage."""
    rev = document.revision
    if document.kill_switch:
        return Resolution(Stage.OFF, 0, rev, "kill_switch")
    flags = document.flags_for(event_type)
    if flags.pin is not None:
        return Resolution(flags.pin, 0, rev, "pin")
    stage = flags.stage or document.default_stage
    if stage is Stage.SHADOW and flags.live_percent > 0:
        return Resolution(stage, flags.live_percent, rev, "cohort")
    if flags.stage is not None:
        return Resolution(flags.stage, 0, rev, "type")
    return Resolution(document.default_stage, 0, rev, "default")


def parse_document(text: str, *, fmt: Literal["toml", "json"],
                   event_types: Collection[str] | None = None) -> FlagsDocument:
    """Parse and validate a flags document, raising `FlagsError` with a readable reason.

    `event_types`: the declared catalogue; a document naming another type is rejected."""
    try:
        raw = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise FlagsError(f"flags document is not valid {fmt.upper()}: {exc}") from None
    try:
        context = None if event_types is None else {"event_types": tuple(event_types)}
        return FlagsDocument.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors())
        raise FlagsError(f"flags document rejected: {problems}") from None
