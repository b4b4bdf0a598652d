"""What wsmigrate imports only when an application uses it: redis-py for a Redis bus or flag store
(REDIS_ON_DEMAND in bridge/server/runtime.py, ~11 MiB per process) and SQLAlchemy for the
transactional outbox (`unified/decorator_outbox.py`, ~26 MiB). Each case runs in a fresh
interpreter, since the test process itself has imported both long ago."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# An app of its own on the in-memory bus with no outbox: a catalogue, one legacy view, a route
# decorated with @publish_event, started and stopped.
PLAIN_APP = """
import asyncio
from fastapi import FastAPI
from wsmigrate import (Declaration, EventCatalog, LegacyProtocol, LegacyView, Settings, TranslationTable,
                       WsMigrate, flat, publish_event)

catalog = EventCatalog(topics=["lamp:{lamp_id:int}", "lamps"])
catalog.event("lamp_switched", topics=["lamp:{id}", "lamps"])
translations = TranslationTable(scopes={"lamp": "lamp:{id}"}, global_topic="lamps")
translations.add(flat("lamp_switched", "lamp_switched", scope="lamp", target="id"))

async def access(scope, lamp_id, user_id):
    return "ok"

legacy = LegacyProtocol(views=[LegacyView(kind="legacy_lamp", scope="lamp", path="/api/ws", param="lamp_id")],
                        access=access)
wsm = WsMigrate(Declaration(catalog=catalog, translations=translations, legacy=legacy),
                Settings.from_env({}, auth=False, bus_url="BUS_URL"))
app = FastAPI()

@app.post("/lamps/{lamp_id}")
@publish_event("lamp_switched", bus=wsm.bus)  # called below outside a request
async def switch(lamp_id: int) -> dict[str, object]:
    return {"id": lamp_id, "on": True}

wsm.install(app)

async def main() -> None:
    async with app.router.lifespan_context(app):
        await switch(3)

RUN
"""

EXAMPLE_APP = """
import asyncio
from examples.EXAMPLE.app import create_app
from wsmigrate import Settings

async def main() -> None:
    app = create_app(Settings.from_env({}, auth=False, bus_url="BUS_URL"))
    async with app.router.lifespan_context(app):
        pass

RUN
"""

REPORT = """
import sys
print("redis" in sys.modules, "sqlalchemy" in sys.modules)
"""
START = "asyncio.run(main())"
# A Redis bus at an address where nothing listens: building its backend is what imports redis-py
BUILD_ONLY = "from wsmigrate.bridge.server.runtime import make_backend\nmake_backend(wsm.runtime.settings)"


def loaded(template: str, tmp_path: Path, **fill: str) -> tuple[bool, bool]:
    script = template
    for name, value in fill.items():
        script = script.replace(name.upper(), value)
    done = subprocess.run([sys.executable, "-c", script + REPORT], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                            # a file: the examples' threads each get their own connection
                                            "WSMIGRATE_DATABASE_URL": f"sqlite:///{tmp_path}/app.db"})
    assert done.returncode == 0, done.stderr[-2000:]
    redis, sqlalchemy = done.stdout.strip().splitlines()[-1].split()
    return redis == "True", sqlalchemy == "True"


def test_an_app_on_the_memory_bus_without_an_outbox_loads_neither_redis_nor_sqlalchemy(tmp_path: Path) -> None:
    assert loaded(PLAIN_APP, tmp_path, bus_url="memory://", run=START) == (False, False)


def test_a_redis_bus_loads_redis(tmp_path: Path) -> None:
    assert loaded(PLAIN_APP, tmp_path, bus_url="redis://127.0.0.1:1/0", run=BUILD_ONLY) == (True, False)


@pytest.mark.parametrize("example", ["boards", "chat"])
def test_the_examples_on_the_memory_bus_do_not_load_redis(example: str, tmp_path: Path) -> None:
    """Both examples keep their data in SQLAlchemy and use the transactional outbox, so they load it."""
    assert loaded(EXAMPLE_APP, tmp_path, example=example, bus_url="memory://", run=START) == (False, True)
