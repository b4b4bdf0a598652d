"""The import direction of the layers, checked on the source (no import side effects)."""

from __future__ import annotations

import ast
import re
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


def imported_modules(path: Path) -> set[str]:
    tree = parse(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import of {node.module}; import from wsmigrate.<layer>"
            found.add(node.module)
    return found


def imported_packages(path: Path) -> set[str]:
    """The layers `path` imports, as `wsmigrate.<layer>` (the only way they are importable)."""
    parts = (name.split(".") for name in imported_modules(path))
    return {p[1] for p in parts if len(p) > 1 and p[0] == "wsmigrate"} & OURS


# An adopter's app, run outside the repository beside its own `metrics`, `legacy`, `bridge`, `unified`.
OWN_LAYER_NAMES = {Path("tests/packaging/adopter_app.py")}


def python_files() -> list[Path]:
    """Every Python file of the repository that is ours (not a venv, not a dependency)."""
    skip = {".venv", "node_modules", ".git", "build", "var", "wsmigrate"}
    return [p for p in ROOT.rglob("*.py")
            if not skip & set(p.relative_to(ROOT).parts) and p.relative_to(ROOT) not in OWN_LAYER_NAMES]


@pytest.mark.parametrize("package", sorted(OURS))
def test_layers_import_only_what_they_may(package: str) -> None:
    violations = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package] - {package})
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in violations.items() if v} == {}


def test_nothing_imports_a_layer_by_its_bare_folder_name() -> None:
    """From the repository root `import unified` would also work, as a second copy of every module
    (other classes, other globals): everything goes through the `wsmigrate` namespace instead."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in imported_modules(path) if n.split(".")[0] in OURS)
        for path in python_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_top_level_is_exactly_the_design_card() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert packages == OURS | {"wsmigrate", "examples"}
    assert not (ROOT / "src").exists()
    # the namespace root holds links to the four folders, never copies of them
    for layer in OURS:
        link = ROOT / "wsmigrate" / layer
        assert link.is_symlink(), link
        assert link.resolve() == (ROOT / layer).resolve(), link


def test_examples_use_only_the_public_api() -> None:
    """An example is an adopter: it imports `wsmigrate` (the names in `wsmigrate.__all__`), never a
    layer's module; its own modules and third-party packages are its business."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in imported_modules(path)
                                            if n.startswith("wsmigrate.") or n.split(".")[0] in OURS)
        for path in (ROOT / "examples").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


# The reference chat app's vocabulary, as identifiers and wire names. Plain English words stay free
# ("message" for error texts, "stream" for Redis streams, worker "thread"s); these do not.
DOMAIN_WORDS = re.compile(
    r"agent|chat|thread_id|thread_|thread:|threads?\b(?!\s*(pool|safe))(?<!worker thread)(?<!worker threads)"
    r"|message_created|stream_(start|chunk|end|error)|system_status",
    re.IGNORECASE,
)
GENERIC_THREAD_USES = re.compile(
    r"threading|threadpool|thread-?safe|main_thread|current_thread|any thread|other thread"
    r"|one thread|a thread|the thread|worker thread|thread pool|from_any_thread|loop's thread|calling thread"
    r"|main thread|that thread|own thread|cross_thread|asyncio\.to_thread|committing thread",
    re.IGNORECASE,
)


def domain_words(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        cleaned = GENERIC_THREAD_USES.sub("", line)
        match = DOMAIN_WORDS.search(cleaned)
        if match:
            found.append(f"{number}: {match.group(0)}: {line.strip()[:100]}")
    return found


def test_the_toolkit_holds_no_word_of_the_reference_domain() -> None:
    offenders = {
        str(path.relative_to(ROOT)): domain_words(path.read_text(encoding="utf-8"))
        for package in sorted(OURS)
        for path in (ROOT / package).rglob("*")
        if path.suffix in (".py", ".js", ".ts", ".html", ".css", ".toml") and "__pycache__" not in path.parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_domain_check_would_catch_a_domain_word() -> None:
    assert domain_words("def broadcast_to_thread(self): ...")
    assert domain_words('topic = f"agent:{id}"')
    assert domain_words("ChatEvent.STREAM_CHUNK")
    assert domain_words("threads = {}")
    assert not domain_words("from starlette.concurrency import run_in_threadpool")
    assert not domain_words("flush from any thread (the loop's thread)")


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
