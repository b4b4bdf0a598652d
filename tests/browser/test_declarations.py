"""The shipped TypeScript declarations compile, under --strict, against the way a frontend uses
the client (tests/browser/typescript/usage.ts), with the TypeScript pinned in its lockfile."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "typescript"


def test_wsclient_declarations_type_check() -> None:
    tsc = HERE / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.fail("TypeScript is missing: `make test` installs it (npm ci in tests/browser/typescript)")
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [str(tsc), "--noEmit", "--strict", "--target", "es2020", "--module", "es2020",
         "--moduleResolution", "node", "usage.ts"],
        cwd=HERE, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
