"""The import direction of the layers, checked on the source (no import side effects)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"legacy", "unified", "bridge", "metrics"}
ALLOWED = {
    "metrics": set(),
    "legacy": {"metrics"},
    "unified": {"metrics"},
    "bridge": {"legacy", "unified", "metrics"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(OURS))
def test_layers_import_only_what_they_may(package: str) -> None:
    violations = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package] - {package})
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in violations.items() if v} == {}


def test_the_top_level_is_exactly_the_design_card() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert packages == OURS
    assert not (ROOT / "src").exists()


def test_only_metrics_constructs_prometheus_metrics() -> None:
    offenders = []
    for package in OURS - {"metrics"}:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
                    "Counter", "Gauge", "Histogram", "Summary", "Info", "Enum",
                }:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
