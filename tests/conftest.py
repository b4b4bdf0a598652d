from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bridge.app import create_app
from bridge.settings import Settings
from tests.support import RunningServer

ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real servers (uvicorn on an ephemeral port) with settings overrides; stop them after."""
    started: list[RunningServer] = []

    def start(**overrides: Any) -> RunningServer:
        overrides.setdefault("database_url", f"sqlite:///{tmp_path}/app-{len(started)}.db")
        overrides.setdefault("stream_delay_ms", 0)
        settings = Settings.from_env({}, **overrides)
        server = RunningServer(create_app(settings, registry=CollectorRegistry())).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> RunningServer:
    return server_factory()
