"""What an application declares about its legacy sockets: views, commands, access (pure, no I/O).

A *view* is one kind of legacy socket as the old frontend opened it:

    LegacyView(kind="legacy_room", scope="room", path="/api/ws", param="room_id")
        /api/ws?room_id=45: the id in a query parameter, on a path shared with other views
    LegacyView(kind="legacy_board", scope="board", path="/ws/board/{board_id}", param="board_id",
               id_type="uuid")
        /ws/board/6f1c...: the id in the path

`kind` labels the connection in metrics (a closed set: the declared views); `scope` is what the
socket follows in the legacy hub (`LegacyConnectionManager.broadcast(scope, id, frame)`);
`on_open(target_id, user_id)` returns the frames the old server sent first (a history), or None
when the target does not exist. *Commands* are the client frames the old server accepted
(`{"type": "post_note", ...}`), each with a pydantic model and an async handler.

Ids are bounded where they enter, with the same rules as topic parameters (`wsmigrate.unified`
documents them): an int in 1..2**63-1, a canonical UUID, or a slug; anything else selects the view
but names no target, and is answered with the view's "not found" error and close.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from wsmigrate.legacy.frames import Frame, default_error_frame

if TYPE_CHECKING:
    from wsmigrate.legacy.endpoint import LegacyContext

IdType = Literal["int", "uuid", "slug"]
TargetId = int | str
Access = Literal["ok", "not_found", "forbidden"]
OpenHook = Callable[[TargetId, str | None], Awaitable[Sequence[Frame] | None]]
AccessHook = Callable[[str, TargetId, str | None], Awaitable[Access]]
CommandHandler = Callable[["LegacyContext", Any], Awaitable[None]]
ErrorFrame = Callable[[str, Any, Any], Frame]

MAX_INT_ID = 2**63 - 1
_INT = re.compile(r"[1-9][0-9]{0,18}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def parse_target(raw: str, id_type: IdType) -> TargetId | None:
    """The target id in `raw`, or None when it is not a valid id of `id_type` (never raises)."""
    if id_type == "int":
        if _INT.fullmatch(raw) is None:
            return None
        value = int(raw)
        return value if value <= MAX_INT_ID else None
    if id_type == "uuid":
        lowered = raw.lower()
        return str(uuid.UUID(lowered)) if _UUID.fullmatch(lowered) else None
    return raw if _SLUG.fullmatch(raw) else None


@dataclass(frozen=True, slots=True)
class LegacyView:
    """One kind of legacy socket (see module docstring)."""

    kind: str
    scope: str
    path: str
    param: str
    id_type: IdType = "int"
    on_open: OpenHook | None = None

    def __post_init__(self) -> None:
        # `legacy_*` for an application's views (dashboards and alerts select kind=~"legacy_.*"),
        # `wsmigrate_*` for wsmigrate's own (the probe's), which no such selector counts.
        if not re.fullmatch(r"(legacy|wsmigrate)_[a-z0-9_]{1,40}", self.kind):
            raise ValueError(f"legacy view kind {self.kind!r}: a metric label such as legacy_board")
        if not self.path.startswith("/"):
            raise ValueError(f"legacy view {self.kind}: path {self.path!r} must start with /")

    @property
    def in_path(self) -> bool:
        """The id is a path parameter (`/ws/board/{board_id}`), not a query parameter."""
        return f"{{{self.param}}}" in self.path

    def label(self, target_id: TargetId | None) -> str:
        """How errors name the target: `Room 45`, `Board 6f1c...`."""
        return f"{self.scope.capitalize()} {target_id if target_id is not None else '?'}"


@dataclass(frozen=True, slots=True)
class LegacyCommand:
    """A client frame type the old server accepted: its model and its handler."""

    frame_type: str
    model: type[BaseModel]
    handle: CommandHandler


async def _everyone(scope: str, target_id: TargetId, user_id: str | None) -> Access:
    return "ok"


@dataclass(frozen=True)
class LegacyProtocol:
    """Everything wsmigrate needs to serve an application's legacy sockets."""

    views: Sequence[LegacyView]
    access: AccessHook = _everyone
    commands: Sequence[LegacyCommand] = ()
    error_frame: ErrorFrame = default_error_frame
    _by_type: dict[str, LegacyCommand] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kinds = [v.kind for v in self.views]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"legacy view kinds must be distinct: {kinds}")
        by_type = {c.frame_type: c for c in self.commands}
        if len(by_type) != len(self.commands):
            raise ValueError("a legacy command type is declared twice")
        object.__setattr__(self, "_by_type", by_type)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(v.kind for v in self.views)

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.scope for v in self.views))

    def command(self, frame_type: object) -> LegacyCommand | None:
        return self._by_type.get(frame_type) if isinstance(frame_type, str) else None

    def paths(self) -> tuple[str, ...]:
        """Every distinct path a view is served at, in declaration order."""
        return tuple(dict.fromkeys(v.path for v in self.views))

    def views_at(self, path: str) -> tuple[LegacyView, ...]:
        return tuple(v for v in self.views if v.path == path)


def select_view(views: Iterable[LegacyView], query: Mapping[str, str],
                path_params: Mapping[str, str]) -> tuple[LegacyView, TargetId | None] | None:
    """The view a request opens and its target id (None: malformed), or None when no view matches
    (on a path shared with the unified endpoint: a unified connection)."""
    for view in views:
        source = path_params if view.in_path else query
        raw = source.get(view.param)
        if raw is not None:
            return view, parse_target(raw, view.id_type)
    return None
