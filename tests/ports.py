"""Free loopback ports for the servers the tests start (one helper for every kind of server).

`bind_free_port` is race-free: the socket stays bound and the server listens on it. `free_port`
is for programs that bind the port themselves (a subprocess, redis-server, Prometheus): the
kernel hands out ephemeral ports in turn, so the window in which another process takes it is tiny.
"""

from __future__ import annotations

import socket


def bind_free_port() -> socket.socket:
    """A socket bound to a free loopback port (the server listens on it: no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A loopback port that was free a moment ago, for a program that binds it itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
