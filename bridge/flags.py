"""Flag stores: where the flags document lives, how changes are applied, audited and reloaded.

`current()` is called once per event at ingress, so it is a plain attribute read. Changes go
through `apply()`, which checks the stage transition rule, bumps the revision, appends to the
audit log and notifies listeners (metrics, caches). `FileFlagStore` also watches its file and
reloads it within a second of an edit; an invalid document is rejected with a clear error and the
last good one stays in force.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from wsmigrate.bridge.errors import FlagsError
from wsmigrate.bridge.stages import FlagsDocument, Stage, TypeFlags, check_transition, parse_document, resolve

log = logging.getLogger(__name__)
MAX_FLAGS_FILE_BYTES = 1024 * 1024  # a flags document is a few KiB; anything near this is not one

AUDIT_CAPACITY = 1000
WATCH_INTERVAL_S = 0.2
Listener = Callable[[FlagsDocument], None]


@dataclass(frozen=True, slots=True)
class FlagChange:
    """One requested change. `kind` decides which other fields matter."""

    kind: Literal["stage", "pin", "unpin", "percent", "kill", "unkill", "default", "reload"]
    event_type: str | None = None
    stage: Stage | None = None
    live_percent: int | None = None
    force: bool = False


def apply_change(document: FlagsDocument, change: FlagChange) -> FlagsDocument:
    """The document after `change` (pure; raises `FlagsError` when the change is not allowed)."""
    types = dict(document.types)
    if change.kind == "kill":
        return document.model_copy(update={"kill_switch": True, "revision": document.revision + 1})
    if change.kind == "unkill":
        return document.model_copy(update={"kill_switch": False, "revision": document.revision + 1})
    if change.kind == "reload":
        raise FlagsError("a reload is not applied as a change")
    if change.kind == "default":
        if change.stage is None:
            raise FlagsError("a default change needs a stage")
        return document.model_copy(update={"default_stage": change.stage, "revision": document.revision + 1})
    if change.event_type is None:
        raise FlagsError(f"a {change.kind} change needs an event type")
    flags = document.flags_for(change.event_type)
    if change.kind == "stage":
        if change.stage is None:
            raise FlagsError("a stage change needs a stage")
        check_transition(flags.stage or document.default_stage, change.stage, force=change.force)
        flags = flags.model_copy(update={"stage": change.stage})
    elif change.kind == "pin":
        flags = flags.model_copy(update={"pin": change.stage})
    elif change.kind == "unpin":
        flags = flags.model_copy(update={"pin": None})
    elif change.kind == "percent":
        percent = change.live_percent if change.live_percent is not None else -1
        if not 0 <= percent <= 100:
            raise FlagsError("live_percent must be between 0 and 100")
        if percent < flags.live_percent and not change.force:
            raise FlagsError("lowering live_percent moves connections back to legacy; use force")
        flags = flags.model_copy(update={"live_percent": percent})
    types[change.event_type] = TypeFlags.model_validate(flags.model_dump())
    return document.model_copy(update={"types": types, "revision": document.revision + 1})


class FlagStore(Protocol):
    kind: str  # memory, file, redis, openfeature: shown by the admin API as the source of truth
    last_error: str | None

    def current(self) -> FlagsDocument: ...

    async def apply(self, change: FlagChange, who: str) -> FlagsDocument: ...

    def audit(self) -> list[dict[str, Any]]: ...

    async def audit_log(self) -> list[dict[str, Any]]:
        """Every change this deployment recorded (this process's, or the shared log)."""

    def add_listener(self, listener: Listener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class TargetedCohorts(Protocol):
    """A flag store whose flag system decides, per user, which legacy connections of a `shadow`
    type are served live (its own percentage rollouts: sticky by user id). The dual path asks once
    per connection and again whenever the listener is called (`bridge/cohorts.py`)."""

    def in_live_cohort(self, event_type: str, identity: str, kind: str) -> bool: ...

    def add_cohort_listener(self, listener: Callable[[], None]) -> None: ...


def _describe(document: FlagsDocument, event_type: str | None) -> str:
    if event_type is None:
        return f"kill_switch={document.kill_switch} default={document.default_stage.value}"
    flags = document.flags_for(event_type)
    return f"stage={resolve(document, event_type).stage.value} pin={flags.pin} live_percent={flags.live_percent}"


class MemoryFlagStore:
    """Flags held in this process (the embedded default)."""

    kind = "memory"

    def __init__(self, document: FlagsDocument | None = None, *, audit_file: Path | None = None) -> None:
        self._document = document or FlagsDocument()
        self._audit: deque[dict[str, Any]] = deque(maxlen=AUDIT_CAPACITY)
        self._audit_file = audit_file
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    def current(self) -> FlagsDocument:
        return self._document

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)
        listener(self._document)

    def _install(self, document: FlagsDocument) -> None:
        self._document = document
        for listener in self._listeners:
            listener(document)

    def _record(self, who: str, change: FlagChange, before: FlagsDocument, after: FlagsDocument) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "who": who,
            "change": change.kind,
            "event_type": change.event_type,
            "from": _describe(before, change.event_type),
            "to": _describe(after, change.event_type),
            "force": change.force,
            "revision": after.revision,
        }
        self._audit.append(entry)
        log.info("flags revision %d by %s: %s %s -> %s", after.revision, who, change.kind, entry["from"], entry["to"])
        if self._audit_file is not None:
            with self._audit_file.open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")

    async def apply(self, change: FlagChange, who: str) -> FlagsDocument:
        async with self._lock:
            before = self._document
            after = apply_change(before, change)
            await self._persist(after)
            self._install(after)
            self._record(who, change, before, after)
            return after

    async def _persist(self, document: FlagsDocument) -> None:
        return None

    def audit(self) -> list[dict[str, Any]]:
        return list(self._audit)

    async def audit_log(self) -> list[dict[str, Any]]:
        return self.audit()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class FileFlagStore(MemoryFlagStore):
    """Flags in a TOML or JSON file, reloaded within a second of an edit."""

    kind = "file"

    def __init__(self, path: Path, *, audit_file: Path | None = None,
                 event_types: Collection[str] | None = None) -> None:
        self.path = path
        self.event_types = event_types
        self.fmt: Literal["toml", "json"] = "json" if path.suffix == ".json" else "toml"
        document, error = FlagsDocument(), None
        if path.exists():
            try:
                document = self._read()
            except FlagsError as exc:  # unreadable at start: the safe default (every type off), said once
                error = str(exc)
                log.error("flags file %s rejected at start (%s); every type is off until it is fixed", path, exc)
        super().__init__(document, audit_file=audit_file)
        self.last_error = error
        self._stamp = self._file_stamp()
        self._watcher: asyncio.Task[None] | None = None

    def _read(self) -> FlagsDocument:
        """The file's document; `FlagsError` for any content that is not one (invalid UTF-8 and
        binary included) or a file that cannot be read."""
        try:
            size = self.path.stat().st_size
            if size > MAX_FLAGS_FILE_BYTES:  # never read a runaway file into memory
                raise FlagsError(f"flags file {self.path.name} is {size} bytes; at most {MAX_FLAGS_FILE_BYTES}")
            text = self.path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FlagsError(f"flags file {self.path.name} is not UTF-8 text: {exc}") from None
        except OSError as exc:
            raise FlagsError(f"flags file {self.path.name} cannot be read: {exc}") from None
        return parse_document(text, fmt=self.fmt, event_types=self.event_types)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Reload the file if it changed on disk; True when a new document took effect."""
        stamp = self._file_stamp()
        if stamp == self._stamp or stamp is None:
            return False
        self._stamp = stamp
        try:
            loaded = self._read()
        except (FlagsError, OSError) as exc:
            self.last_error = str(exc)
            log.error("%s; keeping flags revision %d", exc, self._document.revision)
            return False
        self.last_error = None
        if loaded.model_dump(exclude={"revision"}) == self._document.model_dump(exclude={"revision"}):
            return False
        revision = max(loaded.revision, self._document.revision + 1)
        before = self._document
        after = loaded.model_copy(update={"revision": revision})
        self._install(after)
        self._record(f"file:{self.path.name}", FlagChange(kind="reload"), before, after)
        return True

    async def _persist(self, document: FlagsDocument) -> None:
        text = _render(document, self.fmt)
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp", encoding="utf-8") as tmp:
            tmp.write(text)
        os.replace(tmp.name, self.path)
        self._stamp = self._file_stamp()


def _render(document: FlagsDocument, fmt: Literal["toml", "json"]) -> str:
    if fmt == "json":
        return document.to_json() + "\n"
    lines = [
        f"revision = {document.revision}",
        f"kill_switch = {'true' if document.kill_switch else 'false'}",
        f'default_stage = "{document.default_stage.value}"',
    ]
    for event_type, flags in sorted(document.types.items()):
        lines.append(f"\n[types.{event_type}]")
        if flags.stage is not None:
            lines.append(f'stage = "{flags.stage.value}"')
        if flags.pin is not None:
            lines.append(f'pin = "{flags.pin.value}"')
        lines.append(f"live_percent = {flags.live_percent}")
    return "\n".join(lines) + "\n"
