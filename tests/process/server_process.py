"""`wsmigrate serve` in a real subprocess, for tests that signal or kill the server."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.ports import free_port


def terminate(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, wait (bounded), then SIGKILL: stop a helper process we started, whatever it does."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


ROOT = Path(__file__).resolve().parents[2]
CHAT_APP = "examples.chat.app:app_from_env"


class ServerProcess:
    def __init__(self, tmp_path: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                 app: str = CHAT_APP, command: list[str] | None = None,
                 started: str = "Application startup complete") -> None:
        """`wsmigrate serve --app app`, or any `command` (`{port}` replaced) logging `started` once per
        worker when it is up."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log: list[str] = []
        environment = {**os.environ, "WSMIGRATE_AUTH": "off", "WSMIGRATE_STREAM_DELAY_MS": "0",
                       "WSMIGRATE_DATABASE_URL": f"sqlite:///{tmp_path}/app.db", **(env or {})}
        argv = [part.replace("{port}", str(self.port)) for part in command] if command else [
            sys.executable, "-m", "wsmigrate", "serve", "--app", app, "--port", str(self.port),
            "--workers", str(workers), "--log-level", "info"]
        self.process = subprocess.Popen(
            argv,
            env=environment, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
            start_new_session=True,  # its own process group: `stop` takes the uvicorn workers down too
        )
        self._pending = b""
        self.wait_for(started, count=workers, timeout=60)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/ws"

    def wait_for(self, marker: str, *, count: int = 1, timeout: float) -> None:
        """Read the server's log until `marker` appeared `count` times.

        Reads the raw pipe (unbuffered): `select` on a buffered reader can miss lines that were
        already read into the buffer and wait forever.
        """
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while sum(marker in line for line in self.log) < count:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError(f"{marker!r} not logged {count} times within {timeout} s:\n" + "".join(self.log))
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("server exited:\n" + "".join(self.log))
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            self.log.extend(line.decode(errors="replace") + "\n" for line in lines)

    def stop(self) -> None:
        """Kill the server and every worker it spawned (a killed uvicorn master orphans its workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
