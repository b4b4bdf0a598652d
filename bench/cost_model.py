"""The capacity model of docs/scaling.md: workers, Redis and network for a deployment, from the
costs `make bench` measured. Pure arithmetic, no I/O except `--write`, which rewrites the
generated block of docs/scaling.md (its inputs are recorded there, so tests/unit/test_cost_model.py
re-derives the tables from them and fails if the page and the model disagree).

    .venv/bin/python bench/cost_model.py                       # print the tables for the recorded inputs
    .venv/bin/python bench/cost_model.py --write --costs '{"delivery_us": 14.0, ...}'  # new measured inputs

The model, per second, for N connections, E events/s, each event delivered to S sockets (D = E x S):

- a worker's CPU = E x `skip_us` (it reads every entry of the one global stream, whatever it holds)
  + E x need x `read_us` (it decodes the entries a socket of its own follows; with sockets spread
  without affinity a given worker holds one of an event's S recipients with probability
  need = 1 - (1 - 1/W)^S) + (D / W) x `delivery_us` (its share of the deliveries) + its sockets'
  keepalives (`idle_us_per_conn_s` x N / W); a worker is full at `core_budget` of its core;
- a worker holds at most `max_conns_per_worker` sockets (memory, and the collector's rare passes
  over the whole heap, which grow with it);
- Redis's CPU = E x `append_us` + W x E x `redis_read_us` (each worker reads every entry); one
  Redis primary is full at `core_budget` of its core;
- the network carries D x `frame_bytes` out of the workers and W x E x `entry_bytes` out of Redis.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scaling.md"
BEGIN = "<!-- BEGIN GENERATED MODEL (bench/cost_model.py) -->"
END = "<!-- END GENERATED MODEL -->"
INPUTS_LINE = re.compile(r"^Inputs: `(\{.*\})`$", re.M)


@dataclass(frozen=True)
class Costs:
    """Measured unit costs (microseconds of one core, bytes)."""

    delivery_us: float  # server CPU per delivery, one event per loop turn, in-memory bus
    read_us: float  # extra CPU per event a worker needs on the Redis bus (read, decode, dispatch)
    skip_us: float  # CPU per event a worker reads but nothing on it needs (type and topics only)
    append_us: float  # Redis CPU per published event (the append script)
    redis_read_us: float  # Redis CPU per event per reading worker (XREAD of one entry)
    idle_us_per_conn_s: float  # CPU per idle socket per second (keepalives)
    rss_kib_per_conn: float
    frame_bytes: int = 250  # a unified frame as measured (envelope + 100-byte payload)
    entry_bytes: int = 600  # a stream entry as a worker reads it (RESP)
    max_conns_per_worker: int = 10_000
    core_budget: float = 0.7  # plan to 70 % of a core, leaving room for bursts and collections


@dataclass(frozen=True)
class Sizing:
    connections: int
    events_per_s: int
    fanout: int
    workers: int | None  # None: no number of workers is enough (each one's reading alone is full)
    worker_cpu: float | None  # fraction of a core per worker at that size
    redis_cpu: float | None  # fraction of one Redis core
    redis_shards: int | None
    worker_egress_mbit: float  # all workers together
    redis_egress_mbit: float | None
    first_limit: str


def need(workers: int, fanout: int) -> float:
    """The share of events a worker must decode: one of its sockets is among the event's recipients."""
    return 1 - (1 - 1 / workers) ** fanout


def size(costs: Costs, connections: int, events_per_s: int, fanout: int) -> Sizing:
    deliveries = events_per_s * fanout
    skipping = events_per_s * costs.skip_us / 1e6  # every worker reads every entry, whatever it holds
    workers = max(1, math.ceil(connections / costs.max_conns_per_worker))
    limit = "connections per worker (memory, whole-heap collections)"
    per_worker: float | None = None
    while True:
        reading = skipping + events_per_s * need(workers, fanout) * costs.read_us / 1e6
        share = deliveries / workers * costs.delivery_us / 1e6
        idle = connections / workers * costs.idle_us_per_conn_s / 1e6
        per_worker = reading + share + idle
        if per_worker <= costs.core_budget:
            break
        if skipping >= costs.core_budget or workers > 100_000:
            return Sizing(connections, events_per_s, fanout, None, None, None, None,
                          deliveries * costs.frame_bytes * 8 / 1e6, None,
                          "a worker's core: reading every entry of the one global stream")
        workers += 1
        limit = "a worker's core (deliveries)"
    redis = events_per_s * (costs.append_us + workers * costs.redis_read_us) / 1e6
    shards = math.ceil(redis / costs.core_budget)
    if shards > 1:  # workers can be added; a second primary cannot (one stream): Redis binds first
        limit = "Redis: every worker reads every entry (one stream)"
    return Sizing(connections, events_per_s, fanout, workers, per_worker, redis, shards,
                  deliveries * costs.frame_bytes * 8 / 1e6,
                  workers * events_per_s * costs.entry_bytes * 8 / 1e6, limit)


SCENARIOS = [(c, e, s) for c in (100_000, 1_000_000) for e in (1_000, 10_000) for s in (10, 1_000)]


def render(costs: Costs) -> str:
    lines = [f"Inputs: `{json.dumps(asdict(costs), sort_keys=True)}`", "",
             "| connections | events/s | fan-out | deliveries/s | workers | CPU per worker | Redis CPU (one core) "
             "| Redis primaries needed | egress: workers / Redis (Mbit/s) | what saturates first |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for connections, events, fanout in SCENARIOS:
        s = size(costs, connections, events, fanout)
        workers = "no number suffices" if s.workers is None else f"{s.workers:,}"
        cpu = "-" if s.worker_cpu is None else f"{100 * s.worker_cpu:.0f} %"
        redis = "-" if s.redis_cpu is None else f"{100 * s.redis_cpu:,.0f} %"
        shards = "-" if s.redis_shards is None else f"{s.redis_shards:,}"
        egress_redis = "-" if s.redis_egress_mbit is None else f"{s.redis_egress_mbit:,.0f}"
        lines.append(f"| {connections:,} | {events:,} | {fanout:,} | {events * fanout:,} | {workers} | {cpu} | "
                     f"{redis} | {shards} | {s.worker_egress_mbit:,.0f} / {egress_redis} | {s.first_limit} |")
    return "\n".join(lines)


def recorded_costs(text: str) -> Costs:
    """The inputs the page was generated from."""
    match = INPUTS_LINE.search(text)
    if match is None:
        raise ValueError("docs/scaling.md has no recorded inputs line")
    return Costs(**json.loads(match.group(1)))


def write(costs: Costs) -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + render(costs) + "\n" + text[end:], encoding="utf-8")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite docs/scaling.md's generated block")
    parser.add_argument("--costs", help="a JSON object of Costs fields (default: the page's recorded inputs)")
    args = parser.parse_args(argv)
    costs = Costs(**json.loads(args.costs)) if args.costs else recorded_costs(DOC.read_text(encoding="utf-8"))
    if args.write:
        write(costs)
    print(render(costs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
