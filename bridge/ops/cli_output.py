"""How the `wsmigrate` commands end: an exit code, one clear line, or JSON; never a traceback.

Exit codes (docs/operations.md, "Command line"):

| code | meaning |
|---|---|
| 0 | done |
| 1 | refused (`promote` says not safe) or failed (server down, token refused, the server said no) |
| 2 | usage: a wrong option, a malformed URL, an unknown event type |
| 130 | interrupted (Ctrl-C), after printing what it had |

A command raises `CommandError` for anything it cannot do; `finish` prints it as one line on
stderr, or as `{"ok": false, "error": ...}` on stdout under `--json`, so a script reading the
JSON gets JSON whatever happened. A reader that stops reading (`| head -1`) ends the output
quietly: the rest is discarded and the command exits 0, as `cat` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "WSMIGRATE_URL"
ADMIN_TOKEN_ENV = "WSMIGRATE_ADMIN_TOKEN"


class CommandError(Exception):
    """A command cannot do what it was asked: `message` is the one line the operator reads."""

    def __init__(self, message: str, code: int = EXIT_FAILED, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


def base_url(raw: str) -> str:
    """A server's base URL, checked: `http(s)://host[:port]`, without a trailing slash."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError(f"not a server URL: {raw!r} (expected http://host:port)", EXIT_USAGE)
    return raw.rstrip("/")


def unreachable(url: str, exc: httpx.HTTPError) -> CommandError:
    """One line for a server that did not answer, naming it and why, without the stack."""
    if isinstance(exc, httpx.ConnectError):
        why = "nothing answers there (is the server running?)"
    elif isinstance(exc, httpx.TimeoutException):
        why = "it did not answer in time"
    else:
        why = str(exc) or type(exc).__name__
    return CommandError(f"cannot reach {url}: {why}")


def write(text: str) -> None:
    """Print to stdout; a closed pipe ends the output quietly (see module docstring)."""
    try:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()
        raise SystemExit(EXIT_OK) from None


def discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def emit(result: Any, *, as_json: bool, text: str) -> None:
    write(json.dumps(result, indent=2) if as_json else text)


def fail(error: CommandError, *, as_json: bool) -> int:
    """Report `error` the way the command's output goes; returns its exit code."""
    if as_json:
        write(json.dumps({"ok": False, "error": error.message, **error.details}, indent=2))
    else:
        with contextlib.suppress(BrokenPipeError):
            print(f"wsmigrate: {error.message}", file=sys.stderr, flush=True)
    return error.code
