"""The Redis clients of one worker's bus: one writer, and per shard a reader on the right node.

Why a module of its own: which node a shard's reader must talk to is a cluster matter (the node
serving the shard's slot, which a failover or a slot migration changes), apart from what the bus
does with the clients. The writer is redis-py's cluster client on a cluster (it routes every
script call by its keys and follows `MOVED` itself) and a plain client otherwise. A shard's
reader is always a plain single-connection client, because it must see every failure itself
(its loop resyncs and reports; redis-py never retries for it), and on a cluster it comes with a
plain client of the same node for the shard's heartbeats and for `CLIENT UNBLOCK`.

Clients are made on the event loop that uses them, in `open`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from wsmigrate.unified.errors import BusUnavailableError
from wsmigrate.unified.redis_listener import CONNECTION_ERRORS, Relocate
from wsmigrate.unified.redis_scripts import Keys
from wsmigrate.unified.redis_url import node_url


class BusConnections:
    """The writer and the shard readers of one worker (module docstring)."""

    def __init__(self, url: str, *, cluster: bool, prefix: str, worker_id: str, socket_timeout_s: float,
                 read_block_ms: int) -> None:
        self.url = url
        self.cluster = cluster
        self.prefix = prefix  # CLIENT SETNAME: `{prefix}:writer:{worker}`, `{prefix}:reader:{worker}[:s{shard}]`
        self.worker_id = worker_id
        self.socket_timeout_s = socket_timeout_s
        self.read_block_ms = read_block_ms
        self.writer: Redis | RedisCluster | None = None
        self.readers: dict[int, Redis] = {}
        self._node_writers: dict[tuple[str, int], Redis] = {}
        # The writer retries a lost connection once: safe, appends are idempotent by event id.
        self._writer_options: dict[str, Any] = dict(
            decode_responses=True, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
        )

    async def open(self) -> Redis | RedisCluster:
        if self.cluster:
            cluster = RedisCluster.from_url(self.url, **self._writer_options)
            self.writer = cluster
            await cluster.initialize()
        else:
            self.writer = Redis.from_url(self.url, client_name=self.writer_name, **self._writer_options)
        return self.writer

    def require_writer(self) -> Redis | RedisCluster:
        if self.writer is None:
            raise BusUnavailableError("the Redis bus backend is not started")
        return self.writer

    @property
    def writer_name(self) -> str:
        return f"{self.prefix}:writer:{self.worker_id}"

    def reader_name(self, shard: int | None) -> str:
        """The CLIENT SETNAME of the reader of `shard` (None: of the one reader of an unsharded bus)."""
        name = f"{self.prefix}:reader:{self.worker_id}"
        return name if shard is None else f"{name}:s{shard}"

    def shard_clients(self, shard: int | None, keys: Keys) -> tuple[Redis, Redis]:
        """(reader, writer of the same node) for the stream of `keys`: on a cluster, of the node that
        serves its slot; otherwise the reader and the bus's writer."""
        writer = self.require_writer()
        if not isinstance(writer, RedisCluster):
            reader = self.readers[shard or 0] = self._new_reader(self.url, shard)
            return reader, writer
        return self._on_node(shard, *_serving(writer, keys))

    def relocator(self, shard: int | None, keys: Keys) -> Relocate | None:
        """On a cluster, a shard reader's `relocate`: the clients of the node serving the shard's slot
        now, when that is another node than its reader's (the slot map refreshed from the cluster)."""
        if not self.cluster:
            return None

        async def relocate() -> tuple[Redis, Redis] | None:
            cluster = self.writer
            if not isinstance(cluster, RedisCluster):
                return None
            await cluster.nodes_manager.initialize()  # the slot map as the cluster says it is now
            where = _serving(cluster, keys)
            old = self.readers[shard or 0]
            kwargs = old.connection_pool.connection_kwargs
            if (kwargs.get("host"), kwargs.get("port")) == where:
                return None
            moved = self._on_node(shard, *where)
            with contextlib.suppress(*CONNECTION_ERRORS):
                await old.aclose()
            return moved

        return relocate

    async def close(self) -> None:
        clients: list[Redis | RedisCluster] = [*self.readers.values(), *self._node_writers.values()]
        if self.writer is not None:
            clients.append(self.writer)
        for client in clients:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await client.aclose()
        self.readers, self._node_writers, self.writer = {}, {}, None

    def _on_node(self, shard: int | None, host: str, port: int) -> tuple[Redis, Redis]:
        url = node_url(self.url, host, port)
        reader = self.readers[shard or 0] = self._new_reader(url, shard)
        writer = self._node_writers.get((host, port))
        if writer is None:
            writer = self._node_writers[(host, port)] = Redis.from_url(
                url, client_name=self.writer_name, **self._writer_options)
        return reader, writer

    def _new_reader(self, url: str, shard: int | None) -> Redis:
        return Redis.from_url(
            url, single_connection_client=True, decode_responses=True,
            socket_timeout=self.read_block_ms / 1000 + self.socket_timeout_s,
            socket_connect_timeout=self.socket_timeout_s, client_name=self.reader_name(shard),
            retry=Retry(NoBackoff(), 0),
        )


def _serving(cluster: RedisCluster, keys: Keys) -> tuple[str, int]:
    """(host, port) of the node that serves the slot of `keys`' stream, by the cluster's slot map."""
    node = cluster.get_node_from_key(keys.events)
    if node is None:
        raise BusUnavailableError(f"no Redis Cluster node serves the slot of {keys.events}")
    return str(node.host), int(node.port)
