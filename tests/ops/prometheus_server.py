"""A real Prometheus server for tests: free loopback port, temp config and data dir, 1 s intervals.

Used through the `prometheus` fixture (tests/conftest.py)::

    def test_something(server_factory, prometheus):
        server = server_factory()
        prom = prometheus(server)                       # started, and the target is up
        prom.wait_for_alert("WsmigrateEventsMissing", labels={"event_type": "agent_created"})

Prometheus offers no push signal for "target scraped" or "rule evaluated", so the `wait_*` helpers
poll its HTTP API every POLL_S until a bounded deadline, and fail with what they last saw.

Timing: Prometheus hands its first targets to the scraper after about 5 s (its service discovery
batches updates), so `prometheus(server)` takes ~6 s; after that a scrape and a rule evaluation
happen every second. An alert with `for: 0m` fires on the first evaluation that sees the fault
(`increase()` needs one sample before and one after it); longer `for:` durations really take that
long, so end-to-end tests should wait for "pending" on those.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from tests.ports import free_port
from tests.process.server_process import terminate

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
ALERTS_FILE = OPS / "alerts.yml"
JOB = "wsmigrate"  # ops/prometheus.yml and WsmigrateTargetDown use this job name
POLL_S = 0.2
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

T = TypeVar("T")


class HasHttpUrl(Protocol):
    """Anything with a base URL, e.g. tests.support.RunningServer."""

    @property
    def http(self) -> str: ...


Target = str | HasHttpUrl


class PrometheusError(AssertionError):
    """Prometheus did not start, answered an error, or a wait ran out of time."""


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrometheusError(
            f"`{name}` is not installed: run `make test` (installs Debian's `prometheus` package) or "
            "`apt-get install prometheus`"
        )
    return path


def _scrape_target(target: Target) -> tuple[str, str, str]:
    """(scheme, host:port, metrics path) of a server URL, a RunningServer, or a bare host:port."""
    url = target if isinstance(target, str) else target.http
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.netloc:
        raise ValueError(f"not a scrape target: {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    return parts.scheme, parts.netloc, path


def _yaml_list(items: Sequence[str]) -> str:
    # JSON strings are valid YAML flow scalars, which keeps the config free of quoting surprises.
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _parse_time(raw: str) -> datetime:
    # Prometheus prints nanoseconds and "Z"; Python 3.11 takes fractional seconds of any length.
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


class PrometheusServer:
    """One Prometheus process scraping `targets` as job `wsmigrate`, evaluating `rule_files`."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[Target],
        *,
        rule_files: Sequence[Path] = (ALERTS_FILE,),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
    ) -> None:
        if not targets:
            raise ValueError("give at least one target to scrape")
        self.workdir = workdir
        self.targets = [_scrape_target(t) for t in targets]
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"
        self.config_path = workdir / "prometheus.yml"
        self._client = httpx.Client(timeout=10.0)

    # lifecycle -------------------------------------------------------------------------------

    def write_config(self) -> Path:
        schemes_and_paths = {(scheme, path) for scheme, _, path in self.targets}
        if len(schemes_and_paths) != 1:
            raise ValueError(f"all targets must share one scheme and metrics path: {schemes_and_paths}")
        ((scheme, metrics_path),) = schemes_and_paths
        self.config_path.write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  scrape_timeout: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.evaluation_interval}\n"
            f"rule_files: {_yaml_list([str(p) for p in self.rule_files])}\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            f"    scheme: {scheme}\n"
            f"    metrics_path: {json.dumps(metrics_path)}\n"
            "    static_configs:\n"
            f"      - targets: {_yaml_list([host for _, host, _ in self.targets])}\n"
        )
        return self.config_path

    def start(self, timeout: float = START_TIMEOUT_S) -> PrometheusServer:
        binary = require_binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        deadline = time.monotonic() + timeout
        # The port is free when picked but Prometheus cannot take a bound socket: retry on a race.
        for _ in range(3):
            self.port = free_port()
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={self.config_path}",
                        f"--storage.tsdb.path={self.workdir / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            if self._wait_ready(deadline):
                return self
            self._terminate()
            if "address already in use" not in self.log():
                break
        self.stop()
        raise PrometheusError(f"Prometheus did not become ready within {timeout} s:\n{self.log()}")

    def _wait_ready(self, deadline: float) -> bool:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if self._client.get(f"{self.url}/-/ready").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(POLL_S)
        return False

    def stop(self) -> None:
        self._terminate()
        self._client.close()

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            terminate(process, STOP_TIMEOUT_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # HTTP API ----------------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises PrometheusError on an error envelope."""
        response = self._client.get(f"{self.url}/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result list of a vector (scalars come back as one unlabelled sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def targets_health(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (alerting and recording), each with its group name under `group`."""
        return [
            {**rule, "group": group["name"]}
            for group in self.api("rules")["groups"]
            for rule in group["rules"]
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Active (pending or firing) alerts."""
        return list(self.api("alerts")["alerts"])

    # waiting -----------------------------------------------------------------------------------

    def wait_until(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Poll `probe` until it returns a truthy value, and return that; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                last = probe()
            except (httpx.TransportError, PrometheusError) as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise PrometheusError(f"timed out after {timeout} s waiting for {what}; last saw: {last!r}")
            time.sleep(POLL_S)

    def wait_for_targets_up(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        def probe() -> list[dict[str, Any]] | None:
            targets = self.targets_health()
            ok = len(targets) == len(self.targets) and all(t["health"] == "up" for t in targets)
            return targets if ok else None

        return self.wait_until("every target up", probe, timeout)

    def wait_for_samples(self, count: int, timeout: float = 20.0) -> None:
        """Wait until every target has `count` samples in the last 5 minutes (rate() needs two)."""

        def probe() -> bool:
            result = self.query(f'min(count_over_time(up{{job="{JOB}"}}[5m]))')
            return bool(result) and float(result[0]["value"][1]) >= count

        self.wait_until(f"{count} samples of every target", probe, timeout)

    def wait_for_rule_evaluation(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until every rule has been evaluated after this call; returns the rules."""
        since = datetime.now().astimezone()

        def probe() -> list[dict[str, Any]] | None:
            rules = self.rules()
            done = rules and all(
                r.get("lastEvaluation") and _parse_time(r["lastEvaluation"]) > since for r in rules
            )
            return rules if done else None

        return self.wait_until("an evaluation of every rule", probe, timeout)

    def wait_for_alert(
        self,
        alertname: str,
        *,
        state: str = "firing",
        labels: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Wait until an alert named `alertname` whose labels include `labels` is in `state`
        ("pending" or "firing"); returns it (labels, annotations, state, activeAt, value)."""
        wanted = dict(labels or {})

        def probe() -> dict[str, Any] | None:
            for alert in self.alerts():
                alert_labels = alert["labels"]
                if (
                    alert_labels.get("alertname") == alertname
                    and alert["state"] == state
                    and all(alert_labels.get(k) == v for k, v in wanted.items())
                ):
                    return dict(alert)
            return None

        return self.wait_until(f"alert {alertname} {wanted} to be {state}", probe, timeout)


PrometheusFactory = Callable[..., PrometheusServer]


@contextmanager
def prometheus_servers(workdir: Path) -> Iterator[PrometheusFactory]:
    """Yield `start(*targets, rule_files=..., wait_up=True, **kwargs)`; stop every server after."""
    started: list[PrometheusServer] = []

    def start(
        *targets: Target,
        rule_files: Sequence[Path] = (ALERTS_FILE,),
        wait_up: bool = True,
        **kwargs: Any,
    ) -> PrometheusServer:
        server = PrometheusServer(workdir / f"prometheus-{len(started)}", targets, rule_files=rule_files, **kwargs)
        started.append(server)
        server.start()
        if wait_up:
            server.wait_for_targets_up()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
