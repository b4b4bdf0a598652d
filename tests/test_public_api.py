"""The public API: what `from wsmigrate import ...` offers, pinned, and every name resolvable."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import wsmigrate

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = {
    # declaring events and topics
    "EventCatalog", "EventSpec", "Event", "Topic", "TopicPattern", "Verdict", "allow_all",
    # publishing
    "EventBus", "Publication", "Position", "publish_event", "current_bus",
    # committed changes announced exactly once
    "TransactionalOutbox", "OutboxError", "stage_event", "current_outbox",
    # REST snapshots followed live without a gap
    "StreamPosition", "Positions", "POSITIONS_HEADER", "read_positions", "rest_positions", "topic_positions",
    "positions_header",
    # the legacy side
    "LegacyView", "LegacyCommand", "LegacyProtocol", "Access", "TargetId", "LegacyContext",
    "LegacyConnectionManager", "LegacyProtocolError", "Frame", "TranslationTable", "flat", "nested", "legacy_only",
    # mounting into an app
    "Declaration", "WsMigrate", "Settings", "EnvSettings", "token_of", "UVICORN_WS_OPTIONS", "Scenario",
    # errors, version
    "WsMigrateError", "SettingsError", "__version__",
}


def test_the_public_api_is_exactly_the_pinned_one() -> None:
    assert set(wsmigrate.__all__) == PUBLIC


def test_every_public_name_resolves_and_is_the_defining_modules_object() -> None:
    for name in wsmigrate.__all__:
        value = getattr(wsmigrate, name)
        if name != "__version__":
            module = importlib.import_module(wsmigrate._EXPORTS[name])
            assert getattr(module, name) is value, name
    assert wsmigrate.__version__.count(".") == 2


def test_importing_one_layer_does_not_import_the_others() -> None:
    """Names resolve on first use: `import wsmigrate.unified` pulls in neither FastAPI's app side
    of wsmigrate nor the legacy layer."""
    code = ("import sys, wsmigrate.unified; "
            "print(sorted(m for m in sys.modules if m.startswith(('wsmigrate.bridge', 'wsmigrate.legacy'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_the_examples_import_only_names_of_the_public_api() -> None:
    used: set[str] = set()
    for path in (ROOT / "examples").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "wsmigrate":
                used.update(alias.name for alias in node.names)
    assert used <= PUBLIC
    assert len(used) > 15  # the examples exercise most of it
