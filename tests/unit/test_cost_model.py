"""The capacity model behind docs/scaling.md: its arithmetic, and the page's tables re-derived from
the inputs recorded on it (a page edited by hand, or a model changed without regenerating it, fails)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def cost_model() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cost_model", ROOT / "bench" / "cost_model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_model"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


MODEL = cost_model()
COSTS = MODEL.Costs(delivery_us=10.0, read_us=50.0, skip_us=5.0, append_us=20.0, redis_read_us=5.0,
                    idle_us_per_conn_s=0.1, rss_kib_per_conn=40.0)


def test_small_deployments_are_bound_by_connections_per_worker() -> None:
    sizing = MODEL.size(COSTS, 100_000, 1_000, 10)
    assert sizing.workers == 10  # 10,000 sockets each
    # each worker: 1,000 entries read (0.5 %), the 65 % of them one of its sockets follows decoded
    # (1 - 0.9^10 of 5 %), 1,000 deliveries (1 %) and 10,000 idle sockets (0.1 %)
    assert abs(sizing.worker_cpu - (0.005 + (1 - 0.9 ** 10) * 0.05 + 0.01 + 0.001)) < 1e-9
    assert abs(sizing.redis_cpu - 1_000 * (20 + 10 * 5) / 1e6) < 1e-9
    assert sizing.redis_shards == 1
    assert sizing.first_limit.startswith("connections per worker")


def test_deliveries_add_workers_until_each_fits_its_core_budget() -> None:
    sizing = MODEL.size(COSTS, 100_000, 1_000, 1_000)  # 1,000,000 deliveries/s = 10 cores of deliveries
    assert sizing.workers is not None
    assert sizing.worker_cpu is not None
    assert sizing.worker_cpu <= COSTS.core_budget
    smaller = MODEL.size(COSTS, 100_000, 1_000, 10)
    assert sizing.workers > smaller.workers
    assert sizing.first_limit == "a worker's core (deliveries)"


def test_when_reading_every_entry_fills_a_core_no_number_of_workers_suffices() -> None:
    sizing = MODEL.size(COSTS, 1_000_000, 140_000, 10)  # 140,000 x 5 us = 70 % of each worker's core
    assert sizing.workers is None
    assert "global stream" in sizing.first_limit


def test_workers_decode_only_what_their_sockets_follow() -> None:
    assert MODEL.need(1, 10) == 1.0  # one worker holds every recipient
    assert abs(MODEL.need(100, 10) - (1 - 0.99 ** 10)) < 1e-12  # ~10 %: most events have no socket here
    assert MODEL.need(100, 1_000) > 0.99  # a big fan-out reaches nearly every worker
    wide = MODEL.size(COSTS, 1_000_000, 10_000, 10)
    assert wide.workers is not None  # 10,000 events/s fit: each of 100 workers decodes ~10 % of them
    assert wide.worker_cpu is not None
    assert wide.worker_cpu < 10_000 * (COSTS.skip_us + 0.1 * COSTS.read_us) / 1e6 + 0.02


def test_redis_needs_more_primaries_as_workers_multiply_the_reads() -> None:
    sizing = MODEL.size(COSTS, 1_000_000, 10_000, 10)
    assert sizing.workers == 100
    assert sizing.redis_shards == 8  # 10,000 x (20 + 100 x 5) us = 5.2 cores at 70 %
    assert sizing.first_limit.startswith("Redis")


def test_the_page_shows_what_the_model_gives_for_its_recorded_inputs() -> None:
    text = MODEL.DOC.read_text(encoding="utf-8")
    block = text[text.index(MODEL.BEGIN) + len(MODEL.BEGIN):text.index(MODEL.END)].strip()
    assert block == MODEL.render(MODEL.recorded_costs(text))
