"""Profile one benchmark server under one workload with py-spy, and print where its CPU goes.

    .venv/bin/python bench/profile.py unified --phases connect,warmup,paced --paced-events 10000
    .venv/bin/python bench/profile.py legacy --phases connect,warmup,burst --events 40000 --top 40
    .venv/bin/python bench/profile.py unified --env WSMIGRATE_BUS_URL=redis://127.0.0.1:6379/0

The server runs exactly as in `bench/run.py` (pinned to core 0, the generator on core 1). py-spy
samples the server process from the first event of the workload to its end (`--gil`: only samples
holding the GIL, i.e. Python work; `--idle` to include waiting). The raw stacks are kept in
bench/results/profile-<stamp>/ (speedscope-compatible `.txt` collapsed stacks) and summarised as two
tables: the functions with the most own samples, and with the most samples including callees.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BENCH, descendants, free_port, loadgen, running_server, specs

_LOCATION = re.compile(r" \((?P<file>[^:()]+):\d+\)$")


def summarise(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples", "", "own %   function"]
    lines += [f"{100 * n / samples:5.1f}   {name}" for name, n in own.most_common(top)]
    lines += ["", "total % function"]
    lines += [f"{100 * n / samples:5.1f}   {name}" for name, n in total.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`send (…/site-packages/uvicorn/protocols/x.py:12)` -> `send (uvicorn/protocols/x.py)`."""
    match = _LOCATION.search(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{frame[:match.start()]} ({path})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", help="a server of bench/run.py (bare, fastapi, unified, unified-lean, legacy, ...)")
    parser.add_argument("--phases", default="connect,warmup,burst")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--paced-events", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--nav-styles", default="")
    parser.add_argument("--nav-users", type=int, default=50)
    parser.add_argument("--nav-count", type=int, default=40)
    parser.add_argument("--idle-seconds", type=int, default=10)
    parser.add_argument("--sample-rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--idle", action="store_true", help="also sample threads that are waiting")
    parser.add_argument("--skip-seconds", type=float, default=0.0,
                        help="start sampling this long after the workload starts (skip connect and warmup)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra server environment, e.g. WSMIGRATE_BUS_URL=redis://127.0.0.1:6379/0")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--run-timeout", type=int, default=600)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    spec = specs()[args.server]
    extra_env = dict(item.split("=", 1) for item in args.env)
    outdir = BENCH / "results" / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    outdir.mkdir(parents=True)
    raw = outdir / f"{args.server}.txt"
    port = free_port()
    with running_server(spec, port, outdir / f"{args.server}.log", extra_env) as (proc, _):
        time.sleep(0.3)
        pids = descendants(proc.pid)
        command = [spy, "record", "--format", "raw", "--rate", str(args.sample_rate), "--output", str(raw),
                   "--pid", str(pids[0]), "--nonblocking"]
        if not args.idle:
            command.append("--gil")
        recorders: list[subprocess.Popen[bytes]] = []

        def record() -> None:
            recorders.append(subprocess.Popen(["taskset", "-c", "1", *command], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))

        timer = threading.Timer(args.skip_seconds, record)
        timer.start()
        try:
            args.navigation = bool(args.nav_styles)
            result = loadgen(spec, port, pids, args.phases, args, outdir / f"{args.server}.json",
                             navigation=args.nav_styles)
        finally:
            timer.cancel()
            timer.join()
            for recorder in recorders:
                recorder.send_signal(signal.SIGINT)
                recorder.wait(30)
    for name, phase in result.get("phases", {}).items():
        keys = ("deliveries_per_s", "server_cpu_us_per_delivery", "p99_ms", "navigations_per_s", "lost")
        print(name, {k: phase[k] for k in keys if k in phase})
    print(summarise(raw, args.top))
    print(f"\nraw stacks: {raw}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
