"""The import direction of the layers, checked on the source (no import side effects)."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
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


def parse(path: Path) -> ast.Module:
    """Parse in a fresh thread: CPython 3.11.7 can raise "AST constructor recursion depth mismatch"
    in a thread that earlier caught a RecursionError (gh-106905), which other tests provoke."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ast.parse, path.read_text(), str(path)).result()


def imported_packages(path: Path) -> set[str]:
    tree = parse(path)
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


METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}


def prometheus_constructions(path: Path) -> list[int]:
    """Lines calling a metric class imported from prometheus_client (directly or as a module)."""
    tree = parse(path)
    local_names: set[str] = set()
    module_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client"):
            local_names.update(a.asname or a.name for a in node.names if a.name in METRIC_CLASSES)
        elif isinstance(node, ast.Import):
            module_aliases.update(a.asname or a.name for a in node.names if a.name.startswith("prometheus_client"))
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        direct = isinstance(func, ast.Name) and func.id in local_names
        through_module = (isinstance(func, ast.Attribute) and func.attr in METRIC_CLASSES
                          and isinstance(func.value, ast.Name) and func.value.id in module_aliases)
        if direct or through_module:
            lines.append(node.lineno)
    return lines


def test_only_metrics_constructs_prometheus_metrics() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in sorted(OURS - {"metrics"})
        for path in (ROOT / package).rglob("*.py")
        for line in prometheus_constructions(path)
    ]
    assert offenders == []


def test_the_metric_check_would_catch_a_construction(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from prometheus_client import Counter\nfrom collections import Counter as C\n"
                      "import prometheus_client as pc\nx = Counter('a', 'b')\ny = C()\nz = pc.Gauge('c', 'd')\n")
    assert prometheus_constructions(sample) == [4, 6]
