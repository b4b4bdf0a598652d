"""Redis for the tests: the local default when it answers, otherwise a `redis-server` we start.

Why both: developers usually run a Redis on 127.0.0.1:6379 and the suite should not fight it, while
CI has none. Tests that share a Redis isolate themselves with a unique key prefix (and delete their
keys afterwards). Tests that break Redis on purpose (pause it, restart it empty) always get a
private `RedisServer` on a free port, never the shared one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis

from tests.ports import free_port
from tests.process.server_process import terminate

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 6379
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: `make test` installs Debian's redis-server")
    return binary


class RedisServer:
    """A `redis-server` process we own, on a loopback port: without persistence, or with an
    append-only file fsynced on every write (`appendonly=True`), Redis's durable setting."""

    def __init__(self, port: int | None = None, *, appendonly: bool = False, cluster: bool = False) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.cluster = cluster
        # the cluster bus port (default: port + 10,000, which a free port may overflow or find taken)
        self.cluster_port = free_port() if cluster else 0
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="wsmigrate-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (again, on the same port: a restart comes back empty) and wait until it answers."""
        command = [
            server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--dir", self._dir, "--loglevel", "warning",
        ]
        if self.cluster:  # a restart forgets the cluster too (nodes.conf lives with the data)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._dir, "nodes.conf"))
            command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000", "--cluster-port", str(self.cluster_port),
                        "--repl-diskless-sync-delay", "0",  # a new replica syncs at once, not after 5 s
                        "--cluster-require-full-coverage", "no"]  # a node down: the others still serve
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers("127.0.0.1", self.port, timeout=0.2):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port} within {START_TIMEOUT_S}s")
            time.sleep(0.02)  # polling a process we just started; there is nothing to wait on
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
        terminate(process, STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to clients (a crashed or OOM-killed Redis)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT_S)

    def save(self) -> None:
        """Write an RDB snapshot now: what a restart loads, if nothing newer is persisted."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            client.save()
        finally:
            client.close()

    def flushall(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            client.flushall()
        finally:
            client.close()

    def pause(self) -> None:
        """Freeze the server: connections stay open but nothing answers (a hung Redis)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class RedisClusterServers:
    """A Redis Cluster of our own: `size` primaries (`redis-server --cluster-enabled yes`) on free
    loopback ports, the 16,384 slots spread over them by `redis-cli --cluster create`."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RedisServer(cluster=True) for _ in range(size)]

    @property
    def url(self) -> str:
        """A seed URL for a cluster client (any node; the client discovers the others)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisClusterServers:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=START_TIMEOUT_S,
            )
            self.wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def wait_ok(self) -> None:
        """Until every node says `cluster_state:ok` and knows every other (bounded)."""
        _wait_until(self.nodes, lambda client: client.execute_command("CLUSTER INFO"),
                    lambda info: info.get("cluster_state") == "ok"
                    and int(info.get("cluster_known_nodes", 0)) == len(self.nodes))

    def add_replica(self, primary: RedisServer) -> RedisServer:
        """A new node replicating `primary`, returned once its replication link is up."""
        replica = RedisServer(cluster=True).start()
        self.nodes.append(replica)
        admin = redis.Redis(host="127.0.0.1", port=primary.port, socket_timeout=5)
        try:
            primary_id = admin.execute_command("CLUSTER MYID")
        finally:
            admin.close()
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "add-node", f"127.0.0.1:{replica.port}",
             f"127.0.0.1:{primary.port}", "--cluster-slave", "--cluster-master-id",
             primary_id.decode() if isinstance(primary_id, bytes) else str(primary_id)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=START_TIMEOUT_S,
        )
        _wait_until([replica], lambda client: client.info("replication"),
                    lambda info: info.get("master_link_status") == "up")
        self.wait_ok()
        address = f"127.0.0.1:{replica.port}"
        self._wait_nodes(lambda nodes: "slave" in nodes.get(address, {}).get("flags", ""))  # known as its replica
        return replica

    def failover(self, replica: RedisServer) -> None:
        """`CLUSTER FAILOVER` on `replica` (its primary alive, in sync): returns once every node has
        it as the primary of its slots."""
        client = redis.Redis(host="127.0.0.1", port=replica.port, socket_timeout=5)
        try:
            client.execute_command("CLUSTER FAILOVER")
        finally:
            client.close()
        _wait_until([replica], lambda client: client.info("replication"), lambda info: info.get("role") == "master")
        address = f"127.0.0.1:{replica.port}"
        self._wait_nodes(lambda nodes: "master" in nodes.get(address, {}).get("flags", ""))
        self.wait_ok()

    def move_slot(self, key: str, target: RedisServer) -> None:
        """Migrate the slot of `key`, keys and all, to `target` (what `redis-cli --cluster reshard`
        does slot by slot), and return once every node has the slot on `target`."""
        source = self.node_of(key)
        clients = {node.port: redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5, decode_responses=True)
                   for node in self.nodes}
        try:
            slot = int(clients[source.port].execute_command("CLUSTER KEYSLOT", key))
            ids = {port: str(client.execute_command("CLUSTER MYID")) for port, client in clients.items()}
            clients[target.port].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.port])
            clients[source.port].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.port])
            while keys := clients[source.port].execute_command("CLUSTER GETKEYSINSLOT", slot, 1000):
                clients[source.port].execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            for port in (target.port, source.port, *(p for p in clients if p not in (target.port, source.port))):
                clients[port].execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.port])
        finally:
            for client in clients.values():
                client.close()
        address = f"127.0.0.1:{target.port}"
        self._wait_nodes(lambda nodes: _serves(nodes.get(address, {}), slot))
        self.wait_ok()

    def _wait_nodes(self, done: Callable[[dict[str, Any]], bool]) -> None:
        """Until `done(CLUSTER NODES)` holds on every node (bounded)."""
        _wait_until(self.nodes, lambda client: client.execute_command("CLUSTER NODES"), done)

    def node_of(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot."""
        client = redis.RedisCluster.from_url(self.url, socket_timeout=5)
        try:
            node = client.get_node_from_key(key)
            assert node is not None
            return next(n for n in self.nodes if n.port == int(node.port))
        finally:
            client.close()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def _wait_until(nodes: list[RedisServer], read: Callable[[redis.Redis], Any], done: Callable[[Any], bool]) -> None:
    """Until `done(read(node))` holds on every node, within START_TIMEOUT_S in all."""
    deadline = time.monotonic() + START_TIMEOUT_S
    for node in nodes:
        client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2, decode_responses=True)
        try:
            while not done(seen := read(client)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {node.port} did not get there within {START_TIMEOUT_S}s: {seen}")
                time.sleep(0.05)  # polling the cluster's own report (gossip, replication); nothing to wait on
        finally:
            client.close()


def _serves(node: dict[str, Any], slot: int) -> bool:
    """Whether a node of a parsed `CLUSTER NODES` reply serves `slot` (its `slots`: [start, end] or [slot])."""
    return any(int(span[0]) <= slot <= int(span[-1]) for span in node.get("slots", []))


@contextlib.contextmanager
def reachable_redis() -> Iterator[str]:
    """The URL of a Redis to share: 127.0.0.1:6379 when it answers, else one we start and stop."""
    if answers(DEFAULT_HOST, DEFAULT_PORT):
        yield f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/0"
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


def unique_prefix() -> str:
    return f"wsmigrate-test-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key a test created under `prefix`."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    finally:
        client.close()


def delete_cluster_prefix(cluster: RedisClusterServers, prefix: str) -> None:
    """Remove every key a test created under `prefix`, on every node of the cluster."""
    for node in cluster.nodes:
        client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5)
        try:
            for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
                client.delete(key)  # one by one: keys of one node still hash to different slots
        finally:
            client.close()


def bus_url(redis_url: str, prefix: str) -> str:
    """The bus URL of a Redis with a key prefix of its own (one test's share of a shared Redis)."""
    return f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={prefix}"
