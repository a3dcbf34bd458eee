"""The shards benchmark once, tiny, so it cannot rot: counts and shapes, never timings."""

from __future__ import annotations

from pathlib import Path

from bench import shards
from bench.report import write
from local_stack.hcl import Evaluator, Module

REPO = Path(__file__).resolve().parents[2]


def test_bench_shards_tiny(tmp_path: Path) -> None:
    config = shards.ShardsConfig(recipients=(5, 12), latency_ms=1, pool=4, shard_size=5, max_concurrency=2)
    result = shards.run(config)
    assert [(r["recipients"], r["shards"]) for r in result["rows"]] == [(5, 1), (12, 3)]
    for row in result["rows"]:
        assert row["lost"] == row["duplicated"] == row["left_on_queue"] == 0
        assert row["single_ms"] > 0 and row["sharded_ms"] > 0 and row["sharded_cpu_s"] >= 0
        assert row["max_in_flight_invocations"] <= 2
        (run,) = row["sharded_runs"]
        assert run["invocations"] == row["shards"] and run["posts"] == row["recipients"]
    assert set(result["crossover"]) >= {"interpolated_n", "smallest_n_sharded_faster"}
    assert "crossover" in shards.render(result)
    assert write("shards", result, tmp_path).exists()


def test_defaults_come_from_the_terraform() -> None:
    # each variable's own default in terraform/variables.tf, evaluated by the one HCL reader
    module = Module.load(REPO / "terraform")
    names = ("broadcast_concurrency", "fanout_shard_size", "fanout_max_concurrency", "fanout_batch_size")
    declared = {name: Evaluator(module, {}).value(module.variables[name]["default"]) for name in names}
    assert len(set(declared.values())) == len(names)  # distinct: a bench reading the wrong one is caught
    assert shards.terraform_defaults() == declared


def test_crossover_of_two_lines() -> None:
    rows = [
        {"recipients": 1000, "single_ms": 700.0, "sharded_ms": 900.0},
        {"recipients": 3000, "single_ms": 2100.0, "sharded_ms": 1300.0},
    ]
    # the difference goes from -200 to +800 ms: zero at 1000 + 2000 * 200 / 1000
    assert round(shards.crossover(rows)["interpolated_n"]) == 1400
