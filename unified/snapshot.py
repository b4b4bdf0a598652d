"""A view's initial state over REST, then live over the socket, with no gap and no duplicate.

A view loads its state with a REST call and follows its topics on the one socket. Read in the
wrong order, the two leave a hole: an event committed after the snapshot was read but published
before the subscription went live is in neither. The rule (docs/protocol.md, "Snapshots"):

1. read the **positions** of the view's topics (`read_positions`: one cheap bus read);
2. read the **snapshot** from the database;
3. return both; the client subscribes `since` the positions (`wsclient.js`:
   `subscribe(topic, handler, { since })`), so the server replays exactly the events after them.

Position first: every event at or before it was published after its commit, so the snapshot read
afterwards contains it. The snapshot may also contain a few events after the position (committed
between the two reads); the client recognises those by `event_id` or resource version and skips
them. Read the other way round, an event landing between the reads would be lost.

`topic_positions(...)` packages step 1 as a FastAPI dependency: FastAPI resolves dependencies
before the handler body runs, so the positions are read before the handler reads its snapshot.
The positions go out in the `Wsmigrate-Positions` response header (for endpoints whose body shape
cannot change) and are returned to the handler to put in its JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import HTTPException, Request, Response, status

from wsmigrate.unified.bus import EventBus
from wsmigrate.unified.decorator import current_bus
from wsmigrate.unified.errors import BusClosedError, BusUnavailableError, InvalidTopicError
from wsmigrate.unified.events import StreamPosition

POSITIONS_HEADER = "Wsmigrate-Positions"
BUS_UNAVAILABLE_RETRY_AFTER_S = 1

Positions = dict[str, StreamPosition]
"""`{topic: {epoch, seq}}`: where each topic stood before the snapshot was read."""


async def read_positions(topics: Iterable[str], *, bus: EventBus | None = None) -> Positions:
    """The positions of `topics`, to read *before* the snapshot (`bus` defaults to `current_bus`).

    Raises `InvalidTopicError` for a topic outside the application's grammar (never read, never
    stored) and `BusUnavailableError` while the bus cannot be reached.
    """
    resolved = bus or current_bus.get()
    if resolved is None:
        raise BusClosedError("no event bus: pass bus= or run inside an app that sets current_bus")
    names = list(dict.fromkeys(topics))
    for name in names:
        resolved.catalog.parse_topic(name)
    read = await resolved.positions(names)
    return {topic: StreamPosition(epoch=position.epoch, seq=position.seq) for topic, position in read.items()}


def positions_header(positions: Mapping[str, StreamPosition]) -> str:
    """The `Wsmigrate-Positions` header value: the positions as compact JSON (ASCII: topics are)."""
    return json.dumps({t: p.model_dump() for t, p in positions.items()}, separators=(",", ":"))


def topic_positions(*templates: str) -> Callable[[Request, Response], Awaitable[Positions]]:
    """A FastAPI dependency reading the positions of the topics `templates` name, before the handler.

    Templates are filled from the request's path parameters, then its query parameters:
    `topic_positions("room:{room_id}")`, `topic_positions("rooms")`. The positions are set in
    the `Wsmigrate-Positions` header and returned, for the handler to put in its body::

        @app.get("/api/rooms/{room_id}/view")
        async def view(room_id: int, positions: Positions = Depends(topic_positions("room:{room_id}"))):
            return {"posts": load(room_id), "positions": positions}

    A handler that returns a `Response` itself sets the header with `positions_header(positions)`
    (FastAPI copies dependency headers only onto responses it builds).

    A filled-in topic outside the grammar is a 404 (no resource can have an id the grammar
    refuses); a bus that cannot be reached is a 503 with `Retry-After`, because a snapshot without
    positions cannot be followed without a gap.
    """
    if not templates:
        raise ValueError("topic_positions needs at least one topic template")

    async def dependency(request: Request, response: Response) -> Positions:
        values: dict[str, Any] = {**request.query_params, **request.path_params}
        try:
            topics = [template.format_map(values) for template in templates]
        except KeyError as missing:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no value for {missing} in this request") from None
        positions = await rest_positions(topics)
        response.headers[POSITIONS_HEADER] = positions_header(positions)
        return positions

    return dependency


async def rest_positions(topics: Iterable[str], *, bus: EventBus | None = None) -> Positions:
    """`read_positions` for a REST handler: 404 for a topic outside the grammar, 503 without a bus."""
    try:
        return await read_positions(topics, bus=bus)
    except InvalidTopicError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found") from None
    except (BusUnavailableError, BusClosedError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the event bus is unavailable: {exc}",
                            headers={"Retry-After": str(BUS_UNAVAILABLE_RETRY_AFTER_S)}) from None
