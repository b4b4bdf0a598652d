"""A tiny application of its own that adopts wsmigrate from an installed wheel, using only the public
API (`from wsmigrate import ...`). Run by tests/packaging/test_wheel.py in a fresh virtual
environment beside the app's own `metrics`, `legacy`, `bridge` and `unified` modules; it prints one
line, `ok <version> ...`, or fails.

The domain is unlike the examples': orders, with a legacy socket per order at
`/ws/orders/{order_id}`, an old manager with `broadcast_to_order`, one route migrated to
`@publish_event`, one storing a refund in its SQLite database through the transactional outbox
(`session=`), and an order view served over REST with the positions of its topic.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Iterator
from typing import Annotated

import httpx
import uvicorn
from fastapi import Depends, FastAPI, Request
from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from websockets.asyncio.client import connect

import bridge  # the application's own packages, named like wsmigrate's layers
import legacy
import metrics
import unified
import wsmigrate
from wsmigrate import (
    UVICORN_WS_OPTIONS,
    Declaration,
    EventCatalog,
    Frame,
    LegacyConnectionManager,
    LegacyProtocol,
    LegacyView,
    Positions,
    Settings,
    TransactionalOutbox,
    TranslationTable,
    WsMigrate,
    flat,
    legacy_only,
    publish_event,
    topic_positions,
)

TIMEOUT_S = 10.0


class Base(DeclarativeBase):
    pass


class Refund(Base):
    __tablename__ = "refunds"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int]


class OrderManager:
    """The app's old manager; its body now delegates to wsmigrate's legacy hub."""

    def __init__(self, hub: LegacyConnectionManager) -> None:
        self.hub = hub

    async def broadcast_to_order(self, order_id: int, frame: Frame) -> None:
        await self.hub.broadcast("order", order_id, frame)


def order_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def build_app(port: int) -> FastAPI:
    catalog = EventCatalog(topics=["order:{order_id:int}", "orders"])
    catalog.event("order_shipped", topics=["order:{order_id}", "orders"])
    catalog.event("order_paid", topics=["order:{order_id}"])
    catalog.event("order_refunded", topics=["order:{order_id}"])
    translations = TranslationTable(scopes={"order": "order:{id}"}, global_topic="orders")
    translations.add(flat("order_shipped", scope="order", target="order_id"))
    translations.add(flat("order_paid", scope="order", target="order_id"))
    translations.add(flat("order_refunded", scope="order", target="order_id"))
    translations.add(legacy_only("typing", scope="order"))
    protocol = LegacyProtocol(views=[LegacyView(kind="legacy_order", scope="order", path="/ws/orders/{order_id}",
                                                param="order_id")])
    settings = Settings.from_env({}, auth=False, self_url=f"http://127.0.0.1:{port}")
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    wsm = WsMigrate(Declaration(catalog, translations, protocol), settings, outbox=TransactionalOutbox(engine))
    manager = OrderManager(wsm.hub)
    app = FastAPI()
    app.state.sessions = sessionmaker(engine, expire_on_commit=False)

    @app.post("/orders/{order_id}/ship")
    async def ship(order_id: int) -> dict[str, object]:
        await manager.broadcast_to_order(order_id, {"type": "order_shipped", "order_id": order_id, "carrier": "post"})
        return {"ok": True}

    @app.post("/orders/{order_id}/pay")
    @publish_event("order_paid")
    async def pay(order_id: int) -> dict[str, object]:
        return {"order_id": order_id, "amount": 12}

    @app.post("/orders/{order_id}/refund")
    @publish_event("order_refunded", session="db")
    def refund(order_id: int, db: Annotated[Session, Depends(order_db)]) -> dict[str, object]:
        row = Refund(order_id=order_id)
        db.add(row)
        db.flush()
        return {"order_id": order_id, "refund_id": row.id}

    @app.get("/orders/{order_id}")
    async def order_view(
        order_id: int, positions: Annotated[Positions, Depends(topic_positions("order:{order_id}"))],
    ) -> dict[str, object]:
        return {"order": {"id": order_id}, "positions": positions}

    wsm.install(app)
    return app


async def _recv(ws: object) -> dict[str, object]:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))  # type: ignore[attr-defined, no-any-return]


async def _started(server: uvicorn.Server) -> None:
    """uvicorn sets `started` and offers no event to wait on; poll it, bounded."""
    for _ in range(int(TIMEOUT_S / 0.01)):
        if server.started:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the server did not start")


async def main() -> str:
    assert (metrics.OWNER, legacy.OWNER, bridge.OWNER, unified.OWNER) == ("app",) * 4
    assert "site-packages" in wsmigrate.__file__, wsmigrate.__file__
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(port), log_level="warning", **UVICORN_WS_OPTIONS))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await _started(server)
    base = f"127.0.0.1:{port}"
    try:
        async with connect(f"ws://{base}/api/ws?topics=order:5") as new, connect(f"ws://{base}/ws/orders/5") as old:
            assert (await _recv(new))["type"] == "subscribed"
            async with httpx.AsyncClient(base_url=f"http://{base}", timeout=TIMEOUT_S) as http:
                (await http.post("/orders/5/ship")).raise_for_status()
                (await http.post("/orders/5/pay")).raise_for_status()
                (await http.post("/orders/5/refund")).raise_for_status()
            shipped, paid, refunded = await _recv(new), await _recv(new), await _recv(new)
            assert (shipped["type"], shipped["data"]) == ("order_shipped", {"order_id": 5, "carrier": "post"})
            assert (paid["type"], paid["data"]) == ("order_paid", {"order_id": 5, "amount": 12})
            assert await _recv(old) == {"type": "order_shipped", "order_id": 5, "carrier": "post"}
            assert await _recv(old) == {"type": "order_paid", "order_id": 5, "amount": 12}
            assert (refunded["type"], refunded["data"]) == ("order_refunded", {"order_id": 5, "refund_id": 1})
            assert await _recv(old) == {"type": "order_refunded", "order_id": 5, "refund_id": 1}
        # A view's snapshot, then an event, then the subscription from the snapshot's position: replayed.
        async with httpx.AsyncClient(base_url=f"http://{base}", timeout=TIMEOUT_S) as http:
            since = (await http.get("/orders/6")).raise_for_status().json()["positions"]["order:6"]
            (await http.post("/orders/6/pay")).raise_for_status()
        async with connect(f"ws://{base}/api/ws") as view:
            await view.send(json.dumps({"type": "subscribe", "topics": ["order:6"], "since": {"order:6": since}}))
            ack, replayed = await _recv(view), await _recv(view)
            assert ack["positions"]["order:6"]["recovered"] is True  # type: ignore[index]
            assert (replayed["type"], replayed["seq"]) == ("order_paid", since["seq"] + 1)
    finally:
        server.should_exit = True
        await serving
    return f"ok {wsmigrate.__version__} {shipped['type']} {paid['type']} {refunded['type']}"


if __name__ == "__main__":
    print(asyncio.run(main()))
    sys.exit(0)
