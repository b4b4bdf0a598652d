"""The bus URL: what redis-py connects with, and the options that are ours.

Pure string handling (no Redis, no I/O), shared by the Redis bus and the flags store, which are
both configured by URL alone (`WSMIGRATE_BUS_URL`, `WSMIGRATE_FLAGS_URL`).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

BUS_URL_OPTIONS = ("prefix", "shards", "cluster", "delivery")  # ours, not redis-py's


def bus_url_options(url: str) -> tuple[str, dict[str, str]]:
    """Split our query parameters (`BUS_URL_OPTIONS`) off a bus URL; redis-py rejects ones it does
    not know. The URL left is the one redis-py connects with.

    `redis://host:6379/0?prefix=staging` lets workers configured only through `WSMIGRATE_BUS_URL`
    share a Redis with other deployments (and tests with each other); `shards` and `cluster` choose
    the sharded layout (`unified.redis_backend`, Shards), `delivery` how a worker receives events
    (`stream` or `topics`: `unified.redis_backend`, Delivery).
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {name: value for name, value in query if name in BUS_URL_OPTIONS and value}
    rest = urlencode([(name, value) for name, value in query if name not in BUS_URL_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), ours


def parse_flag(value: str) -> bool:
    """A yes/no bus URL parameter (`cluster=true`)."""
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"cluster={value!r} in the bus URL: use true or false")


def node_url(url: str, host: str, port: int) -> str:
    """`url` (credentials, TLS and all) pointed at one node of a cluster."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    where = f"[{host}]" if ":" in host else host
    netloc = f"{credentials}@{where}:{port}" if credentials else f"{where}:{port}"
    return urlunsplit(parts._replace(netloc=netloc, path=""))
