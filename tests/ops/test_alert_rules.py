"""ops/alerts.yml and ops/prometheus.yml, checked and unit-tested with promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ops.prometheus_server import ALERTS_FILE, OPS, require_binary

ALERT_TESTS = OPS / "alerts.test.yml"
PROMTOOL_TIMEOUT_S = 60
RULE = re.compile(r"(?P<head>- alert: (?P<name>\w+)\n(?:[ \t]*#.*\n)*[ \t]*expr: \|\n)(?P<expr>(?: {10}.*\n)+)")


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *map(str, args)],
        capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S, cwd=cwd, check=False,
    )


def alert_names() -> list[str]:
    return [m["name"] for m in RULE.finditer(ALERTS_FILE.read_text())]


def test_alert_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", ALERTS_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_and_its_rule_files_are_valid() -> None:
    result = promtool("check", "config", OPS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_every_alert_has_a_firing_case_and_a_silent_case(tmp_path: Path) -> None:
    """Replace one rule's expression by one that never fires, or one that always fires: the unit
    tests must then fail, else that alert's firing (or silent) expectation is missing."""
    names = alert_names()
    assert len(names) >= 9, names  # the regex still understands the file's layout
    source = ALERTS_FILE.read_text()
    mutants: dict[Path, str] = {}
    for name in names:
        for label, expr in (("never-fires", "vector(1) < 0"), ("always-fires", "vector(1)")):
            directory = tmp_path / f"{name}-{label}"
            directory.mkdir()

            def swap(match: re.Match[str], target: str = name, replacement: str = expr) -> str:
                return match["head"] + (f"          {replacement}\n" if match["name"] == target else match["expr"])

            (directory / "alerts.yml").write_text(RULE.sub(swap, source))
            shutil.copy(ALERT_TESTS, directory / "alerts.test.yml")
            mutants[directory / "alerts.test.yml"] = f"{name} {label}"

    # Two promtool runs side by side, each over half the mutants: stdout has a section per file with
    # "SUCCESS" only when it passed (failure details go to stderr).
    files = [str(path) for path in mutants]
    runs = [
        subprocess.Popen([require_binary("promtool"), "test", "rules", *files[i::2]], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for i in range(2)
    ]
    stdout = "".join(run.communicate(timeout=PROMTOOL_TIMEOUT_S)[0] for run in runs)
    sections = re.split(r"^Unit Testing:\s+", stdout, flags=re.MULTILINE)
    passed = {s.split("\n", 1)[0].strip(): "SUCCESS" in s for s in sections if s.strip()}
    assert set(passed) == set(files), stdout
    survived = [what for path, what in mutants.items() if passed[str(path)]]
    assert survived == [], f"ops/alerts.test.yml does not notice these rule changes: {survived}"


@pytest.mark.parametrize("name", alert_names())
def test_every_alert_has_a_runbook_section(name: str) -> None:
    docs = (OPS.parent / "docs" / "operations.md").read_text()
    assert f"### {name}\n" in docs
    assert f"docs/operations.md#{name.lower()}" in ALERTS_FILE.read_text()
