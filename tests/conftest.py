from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from examples.chat.app import ChatSettings, create_app
from tests.ports import bind_free_port
from tests.support import RunningServer, split_settings
from wsmigrate import Settings

ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real servers (uvicorn on an ephemeral port) with settings overrides; stop them after."""
    started: list[RunningServer] = []

    def start(*, direct: bool = True, deflate: bool = False, **overrides: Any) -> RunningServer:
        """`direct=False`: stock uvicorn, whose sockets get the ASGI-send outbox; `deflate=True`:
        offer permessage-deflate (see tests/support.RunningServer)."""
        overrides.setdefault("database_url", f"sqlite:///{tmp_path}/app-{len(started)}.db")
        overrides.setdefault("stream_delay_ms", 0)
        overrides.setdefault("auth", False)  # tests of auth switch it on explicitly
        overrides.setdefault("heartbeat_interval_s", 3600)  # test clients do not answer pings unless asked
        sock = bind_free_port()
        overrides.setdefault("self_url", f"http://127.0.0.1:{sock.getsockname()[1]}")
        ours, chat = split_settings(ChatSettings, overrides)
        app = create_app(Settings.from_env({}, **ours), ChatSettings.from_env({}, **chat), registry=CollectorRegistry())
        server = RunningServer(app, sock, direct=direct, deflate=deflate).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> RunningServer:
    return server_factory()


# -- Redis (tests/redis_server.py) -----------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis shared by the session: 127.0.0.1:6379 when it answers, else our own on a free port."""
    from tests.redis_server import reachable_redis

    with reachable_redis() as url:
        yield url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test alone on the shared Redis; its keys are deleted afterwards."""
    from tests.redis_server import delete_prefix, unique_prefix

    prefix = unique_prefix()
    yield prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A three-node Redis Cluster (`RedisClusterServers`) shared by the session's cluster tests,
    each under a prefix of its own (`cluster_prefix`)."""
    from tests.redis_server import RedisClusterServers

    cluster = RedisClusterServers(3).start()
    yield cluster
    cluster.close()


@pytest.fixture
def cluster_prefix(redis_cluster: Any) -> Iterator[str]:
    from tests.redis_server import delete_cluster_prefix, unique_prefix

    prefix = unique_prefix()
    yield prefix
    delete_cluster_prefix(redis_cluster, prefix)


@pytest.fixture
def private_redis() -> Iterator[Any]:
    """A `RedisServer` of this test alone, for tests that pause, kill or restart Redis."""
    from tests.redis_server import RedisServer

    server = RedisServer().start()
    yield server
    server.close()


# -- Prometheus (tests/ops/prometheus_server.py) ---------------------------------------------------


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """`start(*targets, rule_files=(ops/alerts.yml,), wait_up=True) -> PrometheusServer`: a real
    Prometheus on a free loopback port scraping each target (a RunningServer, URL or host:port) as
    job `wsmigrate` every 1 s, evaluating the rules every 1 s; stopped after the test."""
    from tests.ops.prometheus_server import prometheus_servers

    with prometheus_servers(tmp_path / "prometheus") as start:
        yield start
