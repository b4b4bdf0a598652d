"""Benchmark runner: wsmigrate against the servers users would pick instead, in one run.

Each server is started pinned to core 0 (`taskset -c 0`), the Node.js load generator
(bench/loadgen.mjs) pinned to core 1, all traffic on 127.0.0.1. Servers are started fresh for every
repetition and run interleaved (the order rotates per repetition); the tables report medians of the
repetitions whose fan-out lost and duplicated nothing. Results go to bench/results/<stamp>/ (raw
JSON and server logs) and into docs/benchmarks.md between the generated-results markers.

    .venv/bin/python bench/run.py                      # the full matrix (what `make bench` runs)
    .venv/bin/python bench/run.py --clients 200 --events 2000 --paced-events 1000 --reps 1 --no-idle
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS_DIR = BENCH / "servers"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- BEGIN GENERATED RESULTS (bench/run.py) -->"
END = "<!-- END GENERATED RESULTS -->"
SERVER_CORE, GENERATOR_CORE = "0", "1"
TOKEN = "bench-token-not-a-secret"
THREADS = 100
CONNECT_CONCURRENCY = 100  # sockets the load generator opens at once (fresh connects and reconnects alike)
REDIS_SHARDS = 4  # the sharded Redis row: shards on the one Redis the row uses
CLUSTER_SHARDS = 6  # the Redis Cluster row: 3 local primaries, 2 shards each
LONG_OUTAGE_S, LONG_OUTAGE_RATE = 5.0, 200  # the long-outage storms: down 5 s, 200 events/s throughout
REDIS_MAX_EVENTS = 10_000  # the Redis row: burst and paced events (its throughput is far lower, see the doc)
FOLLOW_EVENTS, FOLLOW_RATE = 5_000, 500  # the Redis "cost follows subscriptions" runs (paced)
FOLLOW_REPS = 3  # interleaved repetitions of each placement (`follow_runs`)

# Settings of every wsmigrate server in the benchmark. Authentication stays on (a bearer token of
# the `demo` user, which owns the benchmark's agent and threads); the per-user connection quota and
# the per-connection subscribe rate are raised, because one synthetic user holds 10,000 sockets and
# navigates hundreds of times per second, which the defaults (20 sockets, 10 subscribes/s) refuse.
WSMIGRATE_ENV = {
    "WSMIGRATE_AUTH": "true",
    "WSMIGRATE_DEMO_TOKEN": TOKEN,
    "WSMIGRATE_MAX_CONNECTIONS_PER_USER": "1000000",
    "WSMIGRATE_SUBSCRIBE_RATE_PER_S": "1000000",
    "WSMIGRATE_SUBSCRIBE_BURST": "1000000",
    "WSMIGRATE_STREAM_DELAY_MS": "0",
}


@dataclass
class ServerSpec:
    name: str
    label: str
    command: list[str]
    adapter: str
    env: dict[str, str] = field(default_factory=dict)
    wsmigrate: bool = False
    navigation: str = ""  # loadgen --nav-styles
    calibration: bool = False
    max_events: int | None = None  # a slow peer gets fewer events (rates are per second; see the doc)


def python() -> str:
    return sys.executable


def specs() -> dict[str, ServerSpec]:
    py = python()
    wsm = [py, "wsmigrate_server.py", "--port", "{port}"]
    on: dict[str, str] = {"WSMIGRATE_HISTORY_SIZE": "300", "WSMIGRATE_METRICS_ENABLED": "true"}
    off: dict[str, str] = {"WSMIGRATE_HISTORY_SIZE": "0", "WSMIGRATE_METRICS_ENABLED": "false"}
    return {s.name: s for s in (
        ServerSpec("bare", "bare `websockets` + `broadcast`", [py, "bare_websockets.py", "--port", "{port}"],
                   "plain", navigation="reconnect=plain,resubscribe=plain"),
        ServerSpec("fastapi", "FastAPI naive send loop", [py, "fastapi_naive.py", "--port", "{port}"], "plain"),
        ServerSpec("socketio", "python-socketio rooms", [py, "socketio_rooms.py", "--port", "{port}"], "socketio",
                   max_events=10_000),
        ServerSpec("pubsub", "fastapi-websocket-pubsub", [py, "fastapi_pubsub.py", "--port", "{port}"], "pubsub",
                   max_events=4_000),
        ServerSpec("unified", "wsmigrate unified (metrics + history on)", wsm, "unified", env=on, wsmigrate=True,
                   navigation="reconnect=legacy,resubscribe=unified"),
        ServerSpec("unified-lean", "wsmigrate unified (metrics + history off)", wsm, "unified", env=off,
                   wsmigrate=True),
        ServerSpec("unified-per-turn", "wsmigrate unified, writes every loop turn (no write coalescing)", wsm,
                   "unified", env=on | {"WSMIGRATE_WRITE_COALESCE_MS": "0"}, wsmigrate=True),
        ServerSpec("legacy", "wsmigrate legacy path", wsm, "legacy", env=on, wsmigrate=True),
        ServerSpec("unified-asgi", "wsmigrate unified under stock uvicorn (ASGI send, no direct transport)",
                   [*wsm, "--stock-uvicorn"], "unified", env=on, wsmigrate=True),
        ServerSpec("node", "calibration: Node.js `ws` server", ["node", "node_ceiling.mjs", "--port", "{port}"],
                   "plain", calibration=True),
    )}


# -- processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (uvicorn workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def wait_for_processes(pid: int, count: int, timeout: float = 30.0) -> list[int]:
    """`pid` and its descendants once there are `count` of them (uvicorn's master and workers)."""
    deadline = time.monotonic() + timeout
    while len(found := descendants(pid)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected {count} server processes, found {len(found)}")
        time.sleep(0.05)
    return found


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout:.0f}s")


@contextlib.contextmanager
def running_server(spec: ServerSpec, port: int, log: Path, extra_env: dict[str, str] | None = None,
                   workers: int = 1, *, restart: bool = False,
                   restart_delay_s: float = 0.0) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start `spec` pinned to the server core; yields (process, base_url); stops it by pid.

    `restart`: started again (same port, database and environment) whenever it exits, as a
    supervisor (systemd, Kubernetes) would, `restart_delay_s` after it exited (an outage that
    long); the yielded process is the first one."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    db_dir = tempfile.mkdtemp(prefix="wsmigrate-bench-")
    if spec.wsmigrate:  # the chat example is importable from the repository root
        env |= WSMIGRATE_ENV | spec.env | {"WSMIGRATE_DATABASE_URL": f"sqlite:///{db_dir}/bench.db",
                                            "PYTHONPATH": str(ROOT)}
        env |= extra_env or {}
    command = [part.replace("{port}", str(port)) for part in spec.command]
    if workers > 1:
        command += ["--workers", str(workers)]
        if spec.wsmigrate:
            # Workers starting on a fresh SQLite file race each other (`create_all`: "table already
            # exists"; the demo user: "UNIQUE constraint failed") and the loser takes the server
            # down. Create the schema and the user first (reported; not a benchmark concern).
            subprocess.run([python(), "-c", "import sys; from examples.chat.db import Database; "
                            "from examples.chat.users import Authenticator; "
                            "db = Database(sys.argv[1]); db.create_all(); "
                            "Authenticator(db, enabled=True).ensure_user('demo', sys.argv[2])",
                            env["WSMIGRATE_DATABASE_URL"], TOKEN], check=True, cwd=ROOT)
    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(["taskset", "-c", SERVER_CORE, *command], cwd=SERVERS_DIR, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    proc = current = start()
    stopping = threading.Event()

    def supervise() -> None:
        nonlocal current
        while True:
            current.wait()
            if stopping.wait(restart_delay_s) or stopping.is_set():
                return
            current = start()

    supervisor = threading.Thread(target=supervise, daemon=True) if restart else None
    try:
        wait_port(port, proc)
        base = f"http://127.0.0.1:{port}"
        if spec.wsmigrate:
            prepare_wsmigrate(base)
        if supervisor is not None:
            supervisor.start()
        yield proc, base
    finally:
        stopping.set()
        stop(current)
        if supervisor is not None:
            supervisor.join(30)
        stop(current)  # in case the supervisor started one more just before it was told to stop
        shutil.rmtree(db_dir, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the server's own session: it and its workers only
            proc.wait(10)


def prepare_wsmigrate(base: str) -> None:
    """The benchmark's agent 1 and threads 1..100, owned by the token's user."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("wsmigrate /healthz did not answer 200")
            time.sleep(0.2)
        agent = client.post("/api/agents", json={"name": "bench"})
        agent.raise_for_status()
        agent_id = agent.json()["id"]
        for index in range(THREADS):
            thread = client.post("/api/threads", json={"agent_id": agent_id, "title": f"bench {index}"})
            thread.raise_for_status()
        if agent_id != 1 or thread.json()["id"] != THREADS:
            raise RuntimeError(f"expected agent 1 and threads 1..{THREADS}, got {agent_id} and {thread.json()['id']}")


def events(spec: ServerSpec, wanted: int) -> int:
    return min(wanted, spec.max_events) if spec.max_events else wanted


def loadgen(spec: ServerSpec, port: int, pids: list[int], phases: str, args: argparse.Namespace, out: Path,
            *, clients: int | None = None, navigation: str = "", extra: list[str] | None = None) -> dict[str, Any]:
    command = [
        "taskset", "-c", GENERATOR_CORE, "node", str(BENCH / "loadgen.mjs"),
        "--adapter", spec.adapter, "--port", str(port), "--clients", str(clients or args.clients),
        "--events", str(events(spec, args.events)), "--paced-events", str(events(spec, args.paced_events)),
        "--rate", str(args.rate),
        "--phases", phases, "--pids", ",".join(map(str, pids)), "--clk-tck", str(os.sysconf("SC_CLK_TCK")),
        "--page-size", str(os.sysconf("SC_PAGE_SIZE")), "--idle-seconds", str(args.idle_seconds),
        "--nav-users", str(args.nav_users), "--nav-count", str(args.nav_count), "--out", str(out),
        "--connect-concurrency", str(CONNECT_CONCURRENCY),
    ]
    if navigation:
        command += ["--nav-styles", navigation]
    command += extra or []
    if spec.wsmigrate:
        command += ["--token", TOKEN]
    done = subprocess.run(command, cwd=BENCH, capture_output=True, text=True, timeout=args.run_timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# -- the matrix ---------------------------------------------------------------------------------------


def log_line(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def one_run(spec: ServerSpec, args: argparse.Namespace, outdir: Path, tag: str, phases: str, *,
            clients: int | None = None, navigation: str = "", extra_env: dict[str, str] | None = None,
            workers: int = 1, extra: list[str] | None = None) -> dict[str, Any]:
    port = free_port()
    started = time.monotonic()
    try:
        with running_server(spec, port, outdir / f"{tag}.log", extra_env, workers) as (proc, _):
            # /healthz answers once one worker is up: wait (bounded) for all of them, whose CPU is read
            pids = wait_for_processes(proc.pid, workers + 1 if workers > 1 else 1)
            time.sleep(0.3)  # not a wait for anything: the start-up's last allocations settle before RSS is read
            result = loadgen(spec, port, pids, phases, args, outdir / f"{tag}.json", clients=clients,
                             navigation=navigation, extra=extra)
            result["server_pids"] = pids
    except (RuntimeError, subprocess.TimeoutExpired, httpx.HTTPError, OSError) as exc:
        result = {"error": str(exc)}
        log_line(f"  {tag}: FAILED: {exc}")
    result["elapsed_s"] = time.monotonic() - started
    return result


def fanout_matrix(args: argparse.Namespace, outdir: Path, all_specs: dict[str, ServerSpec]) -> dict[str, list[Any]]:
    names = [n for n in args.servers.split(",") if n]
    runs: dict[str, list[Any]] = {n: [] for n in names}
    for rep in range(args.reps if names else 0):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            spec = all_specs[name]
            phases = "connect,warmup,burst,turns,paced"
            navigation = spec.navigation if args.navigation else ""
            if navigation:
                phases += ",navigation"
            tag = f"fanout-{name}-r{rep + 1}"
            result = one_run(spec, args, outdir, tag, phases, navigation=navigation)
            runs[name].append(result)
            log_line(f"rep {rep + 1} {name}: {summary(result)} ({result['elapsed_s']:.0f}s)")
    return runs


def summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return "error"
    phases = result["phases"]
    parts = []
    if "burst" in phases:
        b = phases["burst"]
        parts.append(f"burst {b['deliveries_per_s']:,.0f}/s cpu {b['server_cpu_pct']:.0f}% "
                     f"gen {b['generator_cpu_pct']:.0f}% lost {b['lost']} dup {b['duplicated']}")
    if "turns" in phases:
        t = phases["turns"]
        parts.append(f"turns {t['deliveries_per_s']:,.0f}/s {fmt(t['server_cpu_us_per_delivery'], '.1f')}us/del "
                     f"gen {t['generator_cpu_pct']:.0f}% lost {t['lost']} dup {t['duplicated']}")
    if "paced" in phases:
        p = phases["paced"]
        parts.append(f"paced p99 {fmt(p['p99_ms'], '.2f')}ms {fmt(p['server_cpu_us_per_delivery'], '.1f')}us/del "
                     f"lost {p['lost']}")
    for key in ("navigation_reconnect", "navigation_resubscribe"):
        if key in phases:
            parts.append(f"{key[11:]} {phases[key]['navigations_per_s']:,.0f}/s")
    if "storm" in phases:
        st = phases["storm"]
        parts.append(f"storm {st['clients']} back in {st['reconnect_s']:.1f}s ({fmt(st['reconnect_vs_fresh'], '.2f')}x "
                     f"fresh) recovered {st['recovered']} lost {st['lost']} dup {st['duplicated']} longest gc "
                     f"{fmt((st.get('collector') or {}).get('longest_ms'), '.0f')}ms")
    if "idle" in phases:
        i = phases["idle"]
        parts.append(f"idle {i['connections']} conns {i['server_rss_kb_per_connection']:.1f}KiB/conn "
                     f"cpu {i['server_cpu_pct']:.1f}%")
    return "; ".join(parts)


# -- Redis -------------------------------------------------------------------------------------------


def restart_storm(args: argparse.Namespace, outdir: Path, url: str, spec: ServerSpec, *, name: str = "restart",
                  rate: int | None = None, outage_s: float = 0.0,
                  server_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The storm after a crash: the subscribers' server on the Redis bus exits at once and its
    supervisor starts it again (`outage_s` later); the publisher and the reference client are on a
    second server of the same bus, so events go on being published meanwhile (`rate` per second)
    and every client must recover them from Redis with `since`."""
    bus = f"{url}?prefix=bench-{name}-{os.getpid()}-{int(time.time())}"
    ports = [free_port(), free_port()]
    env = {"WSMIGRATE_BUS_URL": bus}
    try:
        with running_server(spec, ports[0], outdir / f"{name}-publisher.log", env), \
                running_server(spec, ports[1], outdir / f"{name}-server.log", env | (server_env or {}), restart=True,
                               restart_delay_s=outage_s) as (first, _):
            result = loadgen(spec, ports[0], descendants(first.pid), "connect,storm", args,
                             outdir / f"{name}-storm.json", clients=args.storm_clients,
                             extra=["--sub-ports", str(ports[1]), "--storm-mode", "restart",
                                    "--storm-rate", str(rate or args.storm_rate),
                                    "--storm-lead-ms", str(args.storm_lead_ms)])
    except (RuntimeError, subprocess.TimeoutExpired, httpx.HTTPError, OSError) as exc:
        log_line(f"  {name} storm: FAILED: {exc}")
        return {"error": str(exc)}
    storm: dict[str, Any] = result["phases"]["storm"]
    log_line(f"{name} storm: {summary(result)}")
    return storm


def long_outage_storms(args: argparse.Namespace, outdir: Path, url: str, spec: ServerSpec) -> dict[str, Any]:
    """The restart storm after a longer outage, with more traffic, so that every client replays many
    events: with the replay cache (the default) and without it (`WSMIGRATE_BUS_REPLAY_CACHE=0`)."""
    return {label: restart_storm(args, outdir, url, spec, name=f"outage-{label}", rate=LONG_OUTAGE_RATE,
                                 outage_s=LONG_OUTAGE_S, server_env=env)
            for label, env in (("cache", {"WSMIGRATE_BUS_REPLAY_CACHE": "20000"}),
                               ("no-cache", {"WSMIGRATE_BUS_REPLAY_CACHE": "0"}))}


def follow_runs(args: argparse.Namespace, outdir: Path, url: str, spec: ServerSpec,
                delivery: str = "stream", reps: int = FOLLOW_REPS) -> dict[str, Any]:
    """Does a worker's cost follow its own subscriptions? Three servers on one Redis bus: one only
    publishes, A and B hold the subscribers. `all`: every client on A (B holds none); `halves`: the
    clients of threads 1-50 on A, 51-100 on B. Per server, CPU per published event, in a burst
    (entries read in batches) and paced (about one entry per read). `delivery`: the bus URL's
    (`stream`: every worker reads the global stream; `topics`: Redis pushes each what it follows).

    `reps` interleaved repetitions (all, halves, all, halves, ...): one run's ratio moved by 0.1-0.15
    between two runs minutes apart on this VM. Each placement's row is the median of its
    repetitions; `ratios` holds, per phase, the median of each repetition's halves-to-all ratio,
    which a drift of the VM's speed between repetitions does not skew."""
    runs: dict[str, list[dict[str, Any]]] = {"all": [], "halves": []}
    errors: dict[str, str] = {}
    for rep in range(reps):
        for placement in ("all", "halves"):
            row = _follow_once(args, outdir, url, spec, delivery, placement, rep)
            if "error" in row:
                errors[placement] = row["error"]
            else:
                runs[placement].append(row)
    results: dict[str, Any] = {}
    for placement, rows in runs.items():
        if not rows:
            results[placement] = {"error": errors.get(placement, "not run")}
            continue
        results[placement] = {phase: {key: (sum(r[phase][key] for r in rows) if key in ("lost", "duplicated")
                                            else statistics.median(r[phase][key] for r in rows))
                                      for key in rows[0][phase]}
                              for phase in ("burst", "paced")}
        results[placement]["reps"] = rows
    pairs = list(zip(runs["all"], runs["halves"], strict=False))
    if pairs:
        results["ratios"] = {phase: statistics.median(_per_worker(h[phase]) / a[phase]["a_us_per_event"]
                                                      for a, h in pairs) for phase in ("burst", "paced")}
    return results


def _per_worker(halves: dict[str, Any]) -> float:
    """What one of the two workers holding half the subscribers each spent per published event."""
    return float(halves["a_us_per_event"] + halves["b_us_per_event"]) / 2


def _follow_once(args: argparse.Namespace, outdir: Path, url: str, spec: ServerSpec, delivery: str,
                 placement: str, rep: int) -> dict[str, Any]:
    bus = f"{url}?prefix=bench-follow-{placement}-{os.getpid()}-{int(time.time())}-{rep}&delivery={delivery}"
    name = f"follow-{delivery}-{placement}-r{rep + 1}"
    ports = [free_port() for _ in range(3)]
    try:
        with contextlib.ExitStack() as stack:
            procs = [stack.enter_context(running_server(spec, port, outdir / f"{name}-{role}.log",
                                                        {"WSMIGRATE_BUS_URL": bus}))[0]
                     for role, port in zip(("publisher", "a", "b"), ports, strict=True)]
            groups = [descendants(proc.pid) for proc in procs]
            result = loadgen(spec, ports[0], [pid for group in groups for pid in group],
                             "connect,warmup,burst,paced", args, outdir / f"{name}.json",
                             extra=["--sub-ports", f"{ports[1]},{ports[2]}", "--placement", placement,
                                    "--events", str(FOLLOW_EVENTS), "--paced-events", str(FOLLOW_EVENTS),
                                    "--rate", str(FOLLOW_RATE)])
    except (RuntimeError, subprocess.TimeoutExpired, httpx.HTTPError, OSError) as exc:
        log_line(f"  {name}: FAILED: {exc}")
        return {"error": str(exc)}
    row: dict[str, Any] = {}
    for phase in ("burst", "paced"):
        measured = result["phases"][phase]
        by_pid = measured["server_cpu_s_by_pid"]
        per_event = [sum(by_pid.get(str(pid), 0.0) for pid in group) * 1e6 / measured["events"] for group in groups]
        row[phase] = {"publisher_us_per_event": per_event[0], "a_us_per_event": per_event[1],
                      "b_us_per_event": per_event[2], "lost": measured["lost"],
                      "duplicated": measured["duplicated"], "p99_ms": measured["p99_ms"],
                      "events": measured["events"]}
        log_line(f"{name} {phase}: us/event publisher {per_event[0]:.1f} "
                 f"a {per_event[1]:.1f} b {per_event[2]:.1f}; lost {measured['lost']} dup {measured['duplicated']}")
    return row


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.settimeout(0.5)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_url(outdir: Path) -> Iterator[tuple[str | None, str]]:
    """The Redis at 127.0.0.1:6379 if it answers, else a private `redis-server` pinned to the server core."""
    if redis_answers(6379):
        yield "redis://127.0.0.1:6379/0", "the Redis already running on 127.0.0.1:6379"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None, "no Redis on 127.0.0.1:6379 and no redis-server binary"
        return
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="wsmigrate-bench-redis-")
    with (outdir / "redis.log").open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", workdir], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                yield None, "private redis-server did not start"
                return
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0", f"a private redis-server on 127.0.0.1:{port}, pinned to core 0"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_cluster(outdir: Path, size: int = 3) -> Iterator[str | None]:
    """A private Redis Cluster of `size` primaries on loopback, pinned to the server core (they
    compete with the workers as a local Redis would); yields a seed URL, or None if it cannot start."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="wsmigrate-bench-cluster-"))
    ports = [free_port() for _ in range(size)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (outdir / "redis-cluster.log").open("wb") as out:
            for port in ports:
                (workdir / str(port)).mkdir()
                procs.append(subprocess.Popen(
                    ["taskset", "-c", SERVER_CORE, binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                     "--appendonly", "no", "--dir", str(workdir / str(port)), "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--cluster-port", str(free_port())],
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
            deadline = time.monotonic() + 10
            while not all(redis_answers(port) for port in ports):
                if time.monotonic() > deadline:
                    yield None
                    return
                time.sleep(0.05)
            subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports),
                            "--cluster-replicas", "0", "--cluster-yes"], check=True, stdout=out, stderr=out,
                           timeout=30)
            while b"cluster_state:ok" not in subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"],
                                                            capture_output=True, timeout=5).stdout:
                if time.monotonic() > deadline + 20:
                    yield None
                    return
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


# -- aggregation ---------------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def valid(result: dict[str, Any]) -> bool:
    phases = result.get("phases", {})
    return "error" not in result and all(phases[p]["valid"] for p in ("burst", "turns", "paced") if p in phases)


def med(runs: list[dict[str, Any]], phase: str, key: str, *, only_valid: bool = True) -> float | None:
    values = [r["phases"][phase][key] for r in runs
              if "phases" in r and phase in r["phases"] and (valid(r) or not only_valid)]
    return median(values)


def peak_rss(runs: list[dict[str, Any]]) -> float | None:
    """Median over valid runs of the server's high-water mark of resident memory (VmHWM, MiB)."""
    peaks = [max(p.get("server_peak_rss_mb", 0.0) for p in r["phases"].values()) for r in runs if valid(r)]
    return median([p for p in peaks if p > 0])


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def lost_dup(runs: list[dict[str, Any]], phase: str) -> str:
    """Total lost / duplicated over every run (valid or not)."""
    lost = sum(r["phases"][phase]["lost"] for r in runs if phase in r.get("phases", {}))
    dup = sum(r["phases"][phase]["duplicated"] for r in runs if phase in r.get("phases", {}))
    return f"{lost} / {dup}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# -- the report ----------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for package in ("websockets", "uvicorn", "uvloop", "httptools", "fastapi", "starlette", "pydantic",
                    "prometheus-client", "python-socketio", "python-engineio", "fastapi-websocket-pubsub",
                    "fastapi-websocket-rpc", "wsmigrate"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1048576:.1f} GiB"
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"cpu": model, "cores": str(os.cpu_count()), "memory": mem, "kernel": platform.release(),
            "python": platform.python_version(), "node": node, "commit": commit,
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def target_rows(runs: dict[str, list[Any]], idle: dict[str, Any], all_specs: dict[str, ServerSpec],
                redis: dict[str, Any] | None = None, storm: dict[str, Any] | None = None) -> list[list[str]]:
    def burst(name: str) -> float | None:
        return med(runs.get(name, []), "burst", "deliveries_per_s")

    rows: list[list[str]] = []

    def add(target: str, measured: str, ok: bool | None) -> None:
        rows.append([target, measured, "n/a (not measured)" if ok is None else ("**met**" if ok else "**NOT met**")])

    r_bare = ratio(burst("unified"), burst("bare"))
    add("Fan-out burst, unified (metrics + history on) >= 0.8x bare `websockets`",
        f"{fmt_ratio(r_bare)} ({fmt(burst('unified'))} vs {fmt(burst('bare'))} deliveries/s)",
        None if r_bare is None else r_bare >= 0.8)
    r_sio = ratio(burst("unified"), burst("socketio"))
    add("Fan-out burst, unified >= 3x python-socketio", f"{fmt_ratio(r_sio)} (socketio {fmt(burst('socketio'))}/s)",
        None if r_sio is None else r_sio >= 3)
    p99_u, p99_b = med(runs.get("unified", []), "paced", "p99_ms"), med(runs.get("bare", []), "paced", "p99_ms")
    r_p99 = ratio(p99_u, p99_b)
    add("Paced 1,000 events/s x 1,000 clients: p99 <= 1.5x bare", f"{fmt_ratio(r_p99)} ({fmt(p99_u, '.2f')} ms vs "
        f"{fmt(p99_b, '.2f')} ms)", None if r_p99 is None else r_p99 <= 1.5)
    cpu_u = med(runs.get("unified", []), "paced", "server_cpu_us_per_delivery")
    cpu_b = med(runs.get("bare", []), "paced", "server_cpu_us_per_delivery")
    r_cpu = ratio(cpu_u, cpu_b)
    add("Paced: server CPU per delivery <= 1.3x bare", f"{fmt_ratio(r_cpu)} ({fmt(cpu_u, '.1f')} us vs "
        f"{fmt(cpu_b, '.1f')} us)", None if r_cpu is None else r_cpu <= 1.3)
    turns_u, turns_b = med(runs.get("unified", []), "turns", "deliveries_per_s"), \
        med(runs.get("bare", []), "turns", "deliveries_per_s")
    r_turns = ratio(turns_u, turns_b)
    gen_u = med(runs.get("unified", []), "turns", "generator_cpu_pct")
    add("One event per loop turn: unified (metrics + history on) >= 1.0x bare deliveries/s",
        f"{fmt_ratio(r_turns)} ({fmt(turns_u)} vs {fmt(turns_b)} deliveries/s; generator at {fmt(gen_u, '.0f')}%)",
        None if r_turns is None else r_turns >= 1.0)
    tcpu_u = med(runs.get("unified", []), "turns", "server_cpu_us_per_delivery")
    tcpu_b = med(runs.get("bare", []), "turns", "server_cpu_us_per_delivery")
    r_tcpu = ratio(tcpu_u, tcpu_b)
    tcpu_t = med(runs.get("unified-per-turn", []), "turns", "server_cpu_us_per_delivery")
    per_turn = f"; writing every loop turn {fmt(tcpu_t, '.1f')} us, {fmt_ratio(ratio(tcpu_t, tcpu_b))}" \
        if tcpu_t is not None else ""
    add("One event per loop turn: server CPU per delivery <= 1.1x bare",
        f"{fmt_ratio(r_tcpu)} ({fmt(tcpu_u, '.1f')} us vs {fmt(tcpu_b, '.1f')} us{per_turn})",
        None if r_tcpu is None else r_tcpu <= 1.1)
    add("Paced: server CPU per delivery <= 1.1x bare (the stricter target)",
        f"{fmt_ratio(r_cpu)}", None if r_cpu is None else r_cpu <= 1.1)
    add("Paced: p99 <= 1.2x bare (the stricter target)", f"{fmt_ratio(r_p99)}",
        None if r_p99 is None else r_p99 <= 1.2)
    r_leg = ratio(burst("legacy"), burst("fastapi"))
    add("Legacy path not slower than the naive FastAPI server (burst)",
        f"{fmt_ratio(r_leg)} ({fmt(burst('legacy'))} vs {fmt(burst('fastapi'))} deliveries/s)",
        None if r_leg is None else r_leg >= 1.0)
    rss_u = idle.get("unified", {}).get("server_rss_kb_per_connection")
    rss_f = idle.get("fastapi", {}).get("server_rss_kb_per_connection")
    r_rss = ratio(rss_u, rss_f)
    add("Memory: RSS per connection < 1.2x naive FastAPI (10,000 idle connections)",
        f"{fmt_ratio(r_rss)} ({fmt(rss_u, '.1f')} KiB vs {fmt(rss_f, '.1f')} KiB)",
        None if r_rss is None else r_rss < 1.2)
    add("Memory: RSS per connection <= 1.0x naive FastAPI (the stricter target)", f"{fmt_ratio(r_rss)}",
        None if r_rss is None else r_rss <= 1.0)
    peak_u, peak_b = peak_rss(runs.get("unified", [])), peak_rss(runs.get("bare", []))
    r_peak = ratio(peak_u, peak_b)
    add("Memory: peak RSS of a fan-out run (1,000 clients, default history) <= 2x bare",
        f"{fmt_ratio(r_peak)} ({fmt(peak_u, ',.0f')} MiB vs {fmt(peak_b, ',.0f')} MiB)",
        None if r_peak is None else r_peak <= 2.0)
    held = idle.get("unified", {})
    ok_idle = None if not held else (held.get("connections", 0) >= 10_000 and held.get("connections_closed", 1) == 0)
    add("10,000 idle connections on one process (unified)",
        f"{held.get('connections', 'n/a')} held, {held.get('connections_closed', 'n/a')} dropped, "
        f"CPU at rest {fmt(held.get('server_cpu_pct'), '.1f')}%", ok_idle)
    lean = burst("unified-lean")
    cost = None if lean is None or burst("unified") is None else 1 - burst("unified") / lean  # type: ignore[operator]
    add("Metrics + comparator + history cost <= 15% of fan-out throughput",
        f"{fmt(None if cost is None else 100 * cost, '.1f')}% ({fmt(burst('unified'))} on vs {fmt(lean)} off)",
        None if cost is None else cost <= 0.15)
    nav_u = med(runs.get("unified", []), "navigation_resubscribe", "navigations_per_s")
    nav_l = med(runs.get("unified", []), "navigation_reconnect", "navigations_per_s")
    opens = med(runs.get("unified", []), "navigation_resubscribe", "socket_opens_per_navigation")
    r_nav = ratio(nav_u, nav_l)
    add("Navigation: unified >= 3x legacy navigations/s, 0 socket opens per navigation",
        f"{fmt_ratio(r_nav)} ({fmt(nav_u)} vs {fmt(nav_l)} /s), {fmt(opens, '.0f')} opens/navigation",
        None if r_nav is None else (r_nav >= 3 and opens == 0))
    cpu_memory = med(runs.get("unified", []), "burst", "server_cpu_us_per_delivery")
    for key, row in (("result", "Redis bus (2 workers)"), ("topics", "Redis bus with delivery by topics (2 workers)")):
        phases = ((redis or {}).get(key) or {}).get("phases", {})
        cpu_redis = phases.get("burst", {}).get("server_cpu_us_per_delivery")
        r_redis = ratio(cpu_redis, cpu_memory)
        add(f"{row}: CPU per delivery <= 1.5x the in-memory path's (burst)",
            f"{fmt_ratio(r_redis)} ({fmt(cpu_redis, '.1f')} us vs {fmt(cpu_memory, '.1f')} us)",
            None if r_redis is None else r_redis <= 1.5)
    for key, how in (("follow", "reading the global stream"), ("follow_topics", "with delivery by topics")):
        follow = (redis or {}).get(key) or {}
        follow_ratios: dict[str, tuple[float | None, float | None, float | None]] = {}
        for phase in ("burst", "paced"):
            one = follow.get("all", {}).get(phase, {}).get("a_us_per_event")
            halves = follow.get("halves", {}).get(phase, {})
            half = _per_worker(halves) if "a_us_per_event" in halves else None
            # the median of the repetitions' own ratios (`follow_runs`), else the medians' ratio
            follow_ratios[phase] = ((follow.get("ratios") or {}).get(phase, ratio(half, one)), half, one)
        measured_follow = "; ".join(f"{phase} {fmt_ratio(r)} ({fmt(half, '.1f')} vs {fmt(one, '.1f')} us per event)"
                                    for phase, (r, half, one) in follow_ratios.items())
        follow_ok = [r <= 0.6 for r, _, _ in follow_ratios.values() if r is not None]
        add(f"Redis bus, {how}: a worker holding the subscribers of half the topics costs <= 0.6x per published "
            "event what one holding all of them costs (burst and paced)", measured_follow,
            None if len(follow_ok) < 2 else all(follow_ok))
    st = storm or {}
    longest = (st.get("collector") or {}).get("longest_ms")
    add(f"Reconnect storm: {st.get('clients', 10_000):,} clients back with `since` in <= 2x a fresh connect",
        "not run" if not st else f"{fmt_ratio(st.get('reconnect_vs_fresh'))} ({fmt(st.get('reconnect_s'), '.1f')} s vs "
        f"{fmt(st.get('fresh_connect_s'), '.1f')} s)",
        None if not st or st.get("reconnect_vs_fresh") is None else st["reconnect_vs_fresh"] <= 2.0)
    add("Reconnect storm: replay exact (all recovered, 0 lost, 0 duplicated)",
        "not run" if not st else f"{st.get('recovered'):,} recovered, {st.get('not_recovered')} not, "
        f"{st.get('lost')} lost, {st.get('duplicated')} duplicated",
        None if not st else bool(st.get("valid")))
    add("Reconnect storm: longest collector pause <= 100 ms", "not run" if not st else f"{fmt(longest, ',.0f')} ms",
        None if longest is None else longest <= 100)
    rs = (redis or {}).get("restart_storm") or {}
    if rs and "error" not in rs:
        rs_longest = (rs.get("collector") or {}).get("longest_ms")
        add("Restart storm (Redis bus, the clients' server killed and started again): back in <= 2x a fresh connect",
            f"{fmt_ratio(rs.get('reconnect_vs_fresh'))} ({fmt(rs.get('reconnect_s'), '.1f')} s vs "
            f"{fmt(rs.get('fresh_connect_s'), '.1f')} s)",
            None if rs.get("reconnect_vs_fresh") is None else rs["reconnect_vs_fresh"] <= 2.0)
        add("Restart storm: replay exact from Redis (all recovered, 0 lost, 0 duplicated)",
            f"{rs.get('recovered'):,} recovered, {rs.get('not_recovered')} not, {rs.get('lost')} lost, "
            f"{rs.get('duplicated')} duplicated", bool(rs.get("valid")))
        add("Restart storm: longest collector pause of the restarted server <= 100 ms", f"{fmt(rs_longest, ',.0f')} ms",
            None if rs_longest is None else rs_longest <= 100)
    del all_specs
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(args: argparse.Namespace, runs: dict[str, list[Any]], idle: dict[str, Any], redis: dict[str, Any],
           all_specs: dict[str, ServerSpec], env: dict[str, Any], started: float, outdir: Path,
           storm: dict[str, Any] | None = None) -> str:
    out: list[str] = []
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"Generated by `bench/run.py` on {stamp} in {(time.monotonic() - started) / 60:.1f} min; raw results in "
               f"`{outdir.relative_to(ROOT)}/`.\n")
    out.append("Command: `" + " ".join(["bench/run.py", *sys.argv[1:]]) + "`\n")
    m = env["machine"]
    out.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}; Python {m['python']}, "
               f"Node {m['node']}, ws {env.get('ws', '?')}; commit {m['commit']} (working tree as run); "
               f"load average (1/5/15 min) before the run {m['load_before']}, after {m.get('load_after', '?')}.\n")
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".\n")
    out.append(f"Sizes: {args.clients:,} clients, {THREADS} threads, {args.events:,} burst events, "
               f"{args.paced_events:,} paced events at {args.rate:,}/s, {args.reps} repetitions "
               "(medians of valid runs), "
               f"navigation {args.nav_users} users x {args.nav_count}, idle {args.idle_clients:,} connections for "
               f"{args.idle_seconds} s.\n")

    out.append("### Targets\n")
    out.append(table(["target", "measured (medians)", "verdict"],
                     target_rows(runs, idle, all_specs, redis, storm)) + "\n")

    names = [n for n in args.servers.split(",") if n in runs]
    bare_burst = med(runs.get("bare", []), "burst", "deliveries_per_s")
    out.append("### Fan-out burst\n")
    rows = []
    for name in names:
        rs = runs[name]
        n_valid = sum(valid(r) for r in rs)
        b = med(rs, "burst", "deliveries_per_s")
        rows.append([
            all_specs[name].label, f"{events(all_specs[name], args.events):,}", fmt(b), fmt_ratio(ratio(b, bare_burst)),
            fmt(med(rs, "burst", "server_cpu_us_per_delivery"), ".1f"), fmt(med(rs, "burst", "server_cpu_pct"), ".0f"),
            fmt(med(rs, "burst", "generator_cpu_pct"), ".0f"),
            f"{fmt(med(rs, 'burst', 'p50_ms'), ',.0f')} / {fmt(med(rs, 'burst', 'p99_ms'), ',.0f')}",
            lost_dup(rs, "burst"),
            f"{n_valid}/{len(rs)}", fmt(med(rs, "connect", "setup_per_s")),
            fmt(med(rs, "connect", "server_rss_kb_per_connection"), ".1f"),
        ])
    out.append(table(["server", "events", "deliveries/s", "vs bare", "server CPU us/delivery", "server CPU %",
                      "generator CPU %", "latency p50 / p99 ms", "lost / dup (all runs)", "valid runs",
                      "conn set-up /s", f"RSS KiB/conn ({args.clients:,})"], rows) + "\n")

    out.append("### One event per loop turn\n")
    out.append("The same events as the burst, handed over in frames of 500; the server publishes each one and "
               "yields to its event loop before the next (`await asyncio.sleep(0)`; Node: `setImmediate`), as a "
               "request handler per event or a streamed reply token by token does. Latency is queueing time here, "
               "not reported.\n")
    bare_turns = med(runs.get("bare", []), "turns", "deliveries_per_s")
    bare_turns_cpu = med(runs.get("bare", []), "turns", "server_cpu_us_per_delivery")
    rows = []
    for name in names:
        rs = [r for r in runs[name] if "turns" in r.get("phases", {})]
        if not rs:
            continue
        t = med(rs, "turns", "deliveries_per_s")
        cpu = med(rs, "turns", "server_cpu_us_per_delivery")
        rows.append([
            all_specs[name].label, f"{events(all_specs[name], args.events):,}", fmt(t), fmt_ratio(ratio(t, bare_turns)),
            fmt(cpu, ".1f"), fmt_ratio(ratio(cpu, bare_turns_cpu)), fmt(med(rs, "turns", "server_cpu_pct"), ".0f"),
            fmt(med(rs, "turns", "generator_cpu_pct"), ".0f"), lost_dup(rs, "turns"),
        ])
    out.append(table(["server", "events", "deliveries/s", "vs bare", "server CPU us/delivery", "CPU vs bare",
                      "server CPU %", "generator CPU %", "lost / dup (all runs)"], rows) + "\n")

    out.append("### Fan-out paced\n")
    bare_p99 = med(runs.get("bare", []), "paced", "p99_ms")
    bare_cpu = med(runs.get("bare", []), "paced", "server_cpu_us_per_delivery")
    rows = []
    for name in names:
        rs = runs[name]
        p99 = med(rs, "paced", "p99_ms")
        cpu = med(rs, "paced", "server_cpu_us_per_delivery")
        rows.append([
            all_specs[name].label, f"{events(all_specs[name], args.paced_events):,}",
            fmt(med(rs, "paced", "deliveries_per_s")), fmt(med(rs, "paced", "p50_ms"), ".2f"),
            fmt(p99, ".2f"), fmt(med(rs, "paced", "max_ms"), ".1f"), fmt_ratio(ratio(p99, bare_p99)), fmt(cpu, ".1f"),
            fmt_ratio(ratio(cpu, bare_cpu)), fmt(med(rs, "paced", "server_cpu_pct"), ".0f"),
            fmt(med(rs, "paced", "generator_cpu_pct"), ".0f"),
            lost_dup(rs, "paced"),
        ])
    out.append(table(["server", "events", "deliveries/s", "p50 ms", "p99 ms", "max ms", "p99 vs bare",
                      "server CPU us/delivery", "CPU vs bare", "server CPU %", "generator CPU %",
                      "lost / dup (all runs)"], rows) + "\n")

    out.append("### Navigation (Dashboard <-> Chat)\n")
    rows = []
    for name in names:
        for key, style in (("navigation_reconnect", "reconnect: close, open, subscribe, receive"),
                           ("navigation_resubscribe", "one socket: unsubscribe + subscribe")):
            rs = [r for r in runs[name] if key in r.get("phases", {})]
            if not rs:
                continue
            adapter = rs[0]["phases"][key]["adapter"]
            rows.append([
                all_specs[name].label, f"{adapter} ({style})", fmt(med(rs, key, "navigations_per_s", only_valid=False)),
                fmt(med(rs, key, "socket_opens_per_navigation", only_valid=False), ".2f"),
                fmt(med(rs, key, "server_cpu_us_per_navigation", only_valid=False), ",.0f"),
                f"{fmt(med(rs, key, 'p50_ms', only_valid=False), '.2f')} / "
                f"{fmt(med(rs, key, 'p99_ms', only_valid=False), '.2f')}",
                fmt(med(rs, key, "generator_cpu_pct", only_valid=False), ".0f"),
                fmt(med(rs, key, "failures", only_valid=False), ".0f"),
            ])
    out.append(table(["server", "style", "navigations/s", "socket opens/navigation", "server CPU us/navigation",
                      "p50 / p99 ms", "generator CPU %", "failures"], rows) + "\n")

    if idle:
        out.append(f"### {args.idle_clients:,} idle connections (one run each)\n")
        rows = []
        for name, r in idle.items():
            if "error" in r:
                rows.append([all_specs[name].label, "error: " + r["error"][:200], "", "", "", "", ""])
                continue
            rows.append([all_specs[name].label, f"{r['connections']:,}", str(r["connections_closed"]),
                         fmt(r["server_rss_kb_per_connection"], ".1f"), fmt(r["server_rss_mb"], ",.0f"),
                         fmt(r["setup_per_s"]), fmt(r["server_cpu_pct"], ".2f")])
        out.append(table(["server", "connections", "dropped", "RSS KiB/conn", "RSS MiB", "set-up /s",
                          "CPU % at rest"], rows) + "\n")

    if storm:
        out.append(render_storm(storm, args))
    out.append("### Fan-out on 2 workers with the Redis bus\n")
    if redis.get("result") and "phases" in redis["result"]:
        r = redis["result"]["phases"]
        b, p = r.get("burst", {}), r.get("paced", {})
        out.append(f"{redis['note']}; {min(args.events, REDIS_MAX_EVENTS):,} burst and "
                   f"{min(args.paced_events, REDIS_MAX_EVENTS):,} paced events, one run. "
                   f"Burst: {fmt(b.get('deliveries_per_s'))} deliveries/s, lost {b.get('lost')}, "
                   f"duplicated {b.get('duplicated')}, server CPU {fmt(b.get('server_cpu_us_per_delivery'), '.1f')} us/"
                   "delivery (both workers + master; Redis not included). "
                   f"Paced: p50 {fmt(p.get('p50_ms'), '.2f')} ms, "
                   f"p99 {fmt(p.get('p99_ms'), '.2f')} ms, lost {p.get('lost')}, duplicated {p.get('duplicated')}. "
                   "Both workers share core 0 (a private Redis started by the runner is pinned there too; one already "
                   "running is not), so this row shows the cost and correctness of the Redis path, not a scale-out "
                   "gain; the publisher keeps up to 256 publishes in flight (bench/servers/wsmigrate_server.py).\n")
        out.append(render_redis_variant(
            redis.get("sharded") or {}, b, "sharded row", "unsharded",
            f"**The same row on a sharded bus** ({REDIS_SHARDS} shards on the same Redis, `?shards={REDIS_SHARDS}`: "
            f"each worker runs {REDIS_SHARDS} readers)"))
        out.append(render_redis_variant(
            redis.get("cluster") or {}, b, "Redis Cluster row", "the one Redis",
            "**The same row on a Redis Cluster** (three local primaries pinned to the server core, "
            f"`?cluster=true&shards={CLUSTER_SHARDS}`; flags on the one Redis)"))
        out.append(render_redis_variant(
            redis.get("topics") or {}, b, "row with delivery by topics", "reading the global stream",
            "**The same row with delivery by topics** (`?delivery=topics`: Redis pushes each worker the events "
            "of the topics it follows; here both follow all 100)"))
        out.append(render_follow(redis.get("follow") or {}, "reading the global stream (`delivery=stream`)"))
        out.append(render_follow(redis.get("follow_topics") or {}, "with delivery by topics (`?delivery=topics`)"))
        if redis.get("restart_storm"):
            out.append(render_storm(redis["restart_storm"], args, restart=True))
        if redis.get("long_outage"):
            out.append(render_long_outage(redis["long_outage"]))
    else:
        out.append(f"**Not run**: {redis.get('note', 'skipped')}.\n")
    return "\n".join(out)


def render_redis_variant(result: dict[str, Any], base_burst: dict[str, Any], name: str, base: str,
                         title: str) -> str:
    """One sentence for a variant of the Redis row (sharded, on a cluster), against the plain row."""
    if "phases" not in result:
        return f"**The {name} did not run**: {result.get('error', 'no result')}.\n" if result else ""
    burst, paced = result["phases"].get("burst", {}), result["phases"].get("paced", {})
    plain, cost = base_burst.get("server_cpu_us_per_delivery"), burst.get("server_cpu_us_per_delivery")
    versus = f" ({cost / plain:.2f}x {base})" if cost and plain else ""
    return (f"{title}. Burst: {fmt(burst.get('deliveries_per_s'))} deliveries/s, lost {burst.get('lost')}, "
            f"duplicated {burst.get('duplicated')}, server CPU {fmt(cost, '.1f')} us/delivery{versus}. Paced: p50 "
            f"{fmt(paced.get('p50_ms'), '.2f')} ms, p99 {fmt(paced.get('p99_ms'), '.2f')} ms, lost "
            f"{paced.get('lost')}, duplicated {paced.get('duplicated')}.\n")


def render_follow(follow: dict[str, Any], how: str) -> str:
    rows = []
    placements = (("all", "all 1,000 clients on A, none on B"), ("halves", "threads 1-50 on A, 51-100 on B"))
    for placement, label in placements:
        for phase in ("burst", "paced"):
            r = follow.get(placement, {})
            if "error" in r or phase not in r:
                rows.append([label, phase, str(r.get("error", "not run"))[:200], "", "", "", ""])
                continue
            m = r[phase]
            rows.append([label, phase, fmt(m["publisher_us_per_event"], ".1f"), fmt(m["a_us_per_event"], ".1f"),
                         fmt(m["b_us_per_event"], ".1f"), f"{m['lost']} / {m['duplicated']}", fmt(m["p99_ms"], ".2f")])
    return "\n".join([
        f"**Cost follows subscriptions, {how}.** Three single-process servers on the same Redis bus: one only "
        f"publishes ({FOLLOW_EVENTS:,} events to random threads as a burst, then {FOLLOW_EVENTS:,} at "
        f"{FOLLOW_RATE}/s), A and B hold the 1,000 subscribers. Server CPU per published event, medians of "
        f"{FOLLOW_REPS} interleaved runs (the verdict: the median of each run's halves-to-all ratio):\n",
        table(["placement", "phase", "publisher us/event", "A us/event", "B us/event", "lost / dup", "p99 ms"],
              rows) + "\n",
    ])


def render_storm(st: dict[str, Any], args: argparse.Namespace, *, restart: bool = False) -> str:
    title = "### Restart storm on the Redis bus" if restart else "### Reconnect storm"
    if "error" in st:
        return f"{title}\n\n**Failed**: {st['error'][:300]}\n"
    gc_storm, gc_before = st.get("collector") or {}, st.get("collector_until_storm") or {}
    ref = [st.get(f"reference_{w}") or {} for w in ("before", "storm", "after")]
    full = [gc.get("collections", [0, 0, 0])[2] for gc in (gc_before, gc_storm)]
    slowest = st.get("reference_storm_slowest") or {}
    if restart:
        intro = (f"wsmigrate unified on the Redis bus, {st['clients']:,} clients on {THREADS} topics on one server; "
                 f"{st['rate']:,} events/s throughout, published through a second server of the same bus, where a "
                 f"reference client follows all {THREADS} topics. After {args.storm_lead_ms / 1000:g} s the clients' "
                 "server exits at once, closing nothing (`GET /bench/exit`: a crash or a kill -9), and its supervisor "
                 "starts it again; every client retries (50-250 ms apart) until the new process accepts it, "
                 f"{CONNECT_CONCURRENCY} at a time, and subscribes with `since` its last event's position, which only "
                 "Redis's history can answer now. One run.\n")
        collector_rows = [["longest collector pause of the restarted server (its start-up included)",
                           f"{fmt(gc_storm.get('longest_ms'), ',.0f')} ms"],
                          ["connection attempts refused while it was down", f"{st.get('refused_attempts', 0):,}"],
                          ["sockets lost again before their subscription was answered (then retried)",
                           f"{st.get('reconnect_failures', 0):,}"],
                          ["subscribes answered `unavailable` (then retried on the same socket), whole run",
                           f"{st.get('subscribes_unavailable', 0):,}"]]
    else:
        intro = (f"wsmigrate unified, {st['clients']:,} clients on {THREADS} topics, {st['rate']:,} events/s "
                 f"throughout; after {args.storm_lead_ms / 1000:g} s every socket is dropped at once (no closing "
                 "handshake, as when a proxy in between restarts) and every client reconnects and subscribes with "
                 "`since` its last "
                 f"event's position, {CONNECT_CONCURRENCY} at a time like the fresh connect. A reference client that "
                 f"is not dropped follows all {THREADS} topics. One run.\n")
        pauses = f"{fmt(gc_before.get('longest_ms'), ',.0f')} ms / {fmt(gc_storm.get('longest_ms'), ',.0f')} ms"
        collector_rows = [["longest collector pause: start-up and fresh connect / storm", pauses],
                          ["full collections since start: before the storm / after it", f"{full[0]} / {full[1]}"],
                          ["server CPU during the storm", f"{fmt(st.get('server_cpu_pct'), '.0f')}%"]]
    return "\n".join([
        f"{title}\n",
        intro,
        table(["measure", "value"], [
            ["fresh connect of all clients (no traffic)", f"{fmt(st['fresh_connect_s'], '.1f')} s"],
            ["drop to all live again", f"{fmt(st['reconnect_s'], '.1f')} s ({fmt_ratio(st.get('reconnect_vs_fresh'))} "
             f"the fresh connect; {fmt(st['reconnects_per_s'])} reconnects/s)"],
            ["drop to the first client live again / to half of them", f"{fmt(st.get('first_live_s'), '.1f')} s / "
             f"{fmt(st.get('half_live_s'), '.1f')} s"],
            ["replay", f"{st['recovered']:,} recovered, {st['not_recovered']} not; {st['events']:,} events, "
             f"{st['lost']} lost, {st['duplicated']} duplicated"],
            ["reference client p50 / p99 / max ms: before, during, after the storm",
             " ; ".join(f"{fmt(r.get('p50_ms'), '.2f')} / {fmt(r.get('p99_ms'), '.2f')} / {fmt(r.get('max_ms'), '.1f')}"
                        for r in ref)],
            ["the reference client's slowest event during the storm",
             f"{fmt(slowest.get('ms'), ',.0f')} ms, arriving {fmt(slowest.get('after_drop_ms'), ',.0f')} ms "
             "after the drop"],
            *collector_rows,
        ]) + "\n",
    ])


def render_long_outage(storms: dict[str, Any]) -> str:
    """The restart storm after a longer outage, with and without the replay cache."""
    rows = []
    for label, st in storms.items():
        if "error" in st:
            rows.append([label, f"failed: {st['error'][:120]}", "", "", "", ""])
            continue
        cpu = (st.get("collector") or {}).get("process_cpu_s")
        cached = (st.get("collector") or {}).get("replay_cache") or {}
        cache = "on (20,000 entries, the default)" if label == "cache" else "off (`WSMIGRATE_BUS_REPLAY_CACHE=0`)"
        rows.append([
            cache, f"{fmt(st['reconnect_s'], '.1f')} s ({fmt_ratio(st.get('reconnect_vs_fresh'))})",
            f"{st['recovered']:,} recovered, {st['not_recovered']} not; {st['lost']} lost, "
            f"{st['duplicated']} duplicated",
            f"{st['events']:,} ({st['events'] / THREADS:,.0f} per topic)",
            f"{fmt(cpu, '.1f')} s" if cpu is not None else "n/a",
            f"{cached.get('hits', 0):,} / {cached.get('misses', 0):,}" if cached else "n/a",
        ])
    return "\n".join([
        "### Restart storm after a longer outage\n",
        f"The restart storm again, but the clients' server stays down {LONG_OUTAGE_S:g} s before its supervisor "
        f"starts it, and {LONG_OUTAGE_RATE:,} events/s are published throughout, so that every client replays "
        "tens of events: with the replay cache (the default) and without it. One run each.\n",
        table(["replay cache", "drop to all live again (vs fresh connect)", "replay", "events during the storm",
               "restarted server CPU (start-up and storm)", "replay cache hits / misses"], rows) + "\n",
    ])


def write_doc(text: str) -> None:
    block = f"{BEGIN}\n{text}\n{END}"
    if DOC.exists():
        current = DOC.read_text()
        if BEGIN in current and END in current:
            head, rest = current.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            DOC.write_text(head + block + tail)
            return
        DOC.write_text(current.rstrip() + "\n\n## Results\n\n" + block + "\n")
        return
    DOC.write_text("# Benchmarks\n\n## Results\n\n" + block + "\n")


# -- main ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers",
                        default="bare,fastapi,socketio,pubsub,unified,unified-lean,unified-per-turn,legacy,unified-asgi,node")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--paced-events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--nav-users", type=int, default=50)
    parser.add_argument("--nav-count", type=int, default=40)
    parser.add_argument("--no-navigation", dest="navigation", action="store_false")
    parser.add_argument("--idle-clients", type=int, default=10_000)
    # 30 s: longer than the keepalive cycles (uvicorn's protocol ping every 20 s, the unified
    # heartbeat after 25 quiet seconds), so "at rest" includes what keeping 10,000 sockets alive costs
    parser.add_argument("--idle-seconds", type=int, default=30)
    parser.add_argument("--idle-servers", default="bare,fastapi,unified,legacy")
    parser.add_argument("--no-idle", dest="idle", action="store_false")
    parser.add_argument("--no-redis", dest="redis", action="store_false")
    parser.add_argument("--storm-clients", type=int, default=10_000)
    parser.add_argument("--storm-rate", type=int, default=100, help="events/s during the reconnect storm")
    parser.add_argument("--storm-lead-ms", type=int, default=3000)
    parser.add_argument("--no-storm", dest="storm", action="store_false")
    parser.add_argument("--run-timeout", type=int, default=600, help="seconds per load generator run")
    parser.add_argument("--no-doc", dest="doc", action="store_false", help="do not touch docs/benchmarks.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("taskset") is None or shutil.which("node") is None:
        print("bench: needs taskset and node on PATH", file=sys.stderr)
        return 2
    if not (BENCH / "node_modules" / "ws").exists():
        print("bench: run `npm ci` in bench/ first (make bench does)", file=sys.stderr)
        return 2
    started = time.monotonic()
    env: dict[str, Any] = {"machine": machine(), "versions": versions()}
    env["ws"] = json.loads((BENCH / "node_modules" / "ws" / "package.json").read_text())["version"]
    outdir = BENCH / "results" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir.mkdir(parents=True)
    all_specs = specs()
    log_line(f"results in {outdir}")

    runs = fanout_matrix(args, outdir, all_specs)

    idle: dict[str, Any] = {}
    if args.idle:
        for name in [n for n in args.idle_servers.split(",") if n]:
            result = one_run(all_specs[name], args, outdir, f"idle-{name}", "idle", clients=args.idle_clients)
            idle[name] = result.get("phases", {}).get("idle", result if "error" in result else {"error": "no result"})
            log_line(f"idle {name}: {summary(result)} ({result['elapsed_s']:.0f}s)")

    storm: dict[str, Any] = {}
    if args.storm:
        result = one_run(all_specs["unified"], args, outdir, "storm-unified", "connect,storm",
                         clients=args.storm_clients,
                         extra=["--storm-rate", str(args.storm_rate), "--storm-lead-ms", str(args.storm_lead_ms)])
        storm = result.get("phases", {}).get("storm", result if "error" in result else {"error": "no result"})
        log_line(f"storm: {summary(result)} ({result['elapsed_s']:.0f}s)")

    redis: dict[str, Any] = {"note": "skipped (--no-redis)"}
    if args.redis:
        with redis_url(outdir) as (url, note):
            if url is None:
                redis = {"note": note}
            else:
                spec = dataclasses.replace(all_specs["unified"], max_events=REDIS_MAX_EVENTS)
                result = one_run(spec, args, outdir, "redis-unified-2workers",
                                 "connect,warmup,burst,paced", extra_env={"WSMIGRATE_BUS_URL": url}, workers=2)
                if "error" in result:
                    log_tail = (outdir / "redis-unified-2workers.log").read_text(errors="replace").strip().splitlines()
                    reason = next((line for line in reversed(log_tail) if "Error" in line), result["error"])
                    redis = {"note": f"`wsmigrate serve --workers 2 --bus {url}` did not run: {reason[:300]}"}
                else:
                    redis = {"note": f"Redis: {note}", "result": result}
                log_line(f"redis: {summary(result)}")
                sharded = one_run(spec, args, outdir, f"redis-unified-2workers-{REDIS_SHARDS}shards",
                                  "connect,warmup,burst,paced",
                                  extra_env={"WSMIGRATE_BUS_URL": f"{url}?shards={REDIS_SHARDS}"}, workers=2)
                redis["sharded"] = sharded
                log_line(f"redis, {REDIS_SHARDS} shards: {summary(sharded)}")
                with redis_cluster(outdir) as cluster:
                    if cluster is None:
                        redis["cluster"] = {"error": "a local Redis Cluster did not start"}
                    else:  # the flags document stays on the one Redis primary
                        cluster_env = {"WSMIGRATE_BUS_URL": f"{cluster}?cluster=true&shards={CLUSTER_SHARDS}",
                                       "WSMIGRATE_FLAGS_URL": f"{url}?prefix=bench-flags-{os.getpid()}"}
                        redis["cluster"] = one_run(spec, args, outdir, "redis-unified-2workers-cluster",
                                                   "connect,warmup,burst,paced", workers=2, extra_env=cluster_env)
                    log_line(f"redis cluster: {summary(redis['cluster'])}")
                topics = one_run(spec, args, outdir, "redis-unified-2workers-topics", "connect,warmup,burst,paced",
                                 extra_env={"WSMIGRATE_BUS_URL": f"{url}?delivery=topics"}, workers=2)
                redis["topics"] = topics
                log_line(f"redis, delivery=topics: {summary(topics)}")
                redis["follow"] = follow_runs(args, outdir, url, all_specs["unified"])
                redis["follow_topics"] = follow_runs(args, outdir, url, all_specs["unified"], delivery="topics")
                if args.storm:
                    redis["restart_storm"] = restart_storm(args, outdir, url, all_specs["unified"])
                    redis["long_outage"] = long_outage_storms(args, outdir, url, all_specs["unified"])

    (outdir / "summary.json").write_text(json.dumps({"args": vars(args), "env": env, "runs": runs, "idle": idle,
                                                     "redis": redis, "storm": storm}, indent=1))
    env["machine"]["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = render(args, runs, idle, redis, all_specs, env, started, outdir, storm)
    (outdir / "results.md").write_text(text + "\n")
    if args.doc:
        write_doc(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

