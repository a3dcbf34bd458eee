"""Each benchmark once, in a tiny configuration, so none can rot. Asserts shapes and counts, never timings."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import cli, coldstart, connect_rate, e2e, fanout, post_cost
from bench.report import write


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    """Benchmarks set the functions' variables in os.environ; other tests must not see them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def check_written(name: str, result: dict[str, Any], tmp_path: Path) -> None:
    path = write(name, result, tmp_path)
    data = json.loads(path.read_text())
    assert data["benchmark"] == name
    assert data["machine"]["cores"] >= 1 and data["machine"]["python"]
    assert (tmp_path / f"{name}-latest.json").exists()


def test_bench_fanout_tiny(tmp_path: Path) -> None:
    config = fanout.FanoutConfig(
        recipients=(5, 12),
        latency_ms=1,
        pool=4,
        repeats=1,
        sequential_max=5,
        sequential_sample=4,
        sweep_recipients=5,
        sweep_pools=(2, 4),
        clients=("boto3", "lean"),
    )
    result = fanout.run(config)
    assert [(r["client"], r["recipients"]) for r in result["rows"]] == [
        ("boto3", 5),
        ("boto3", 12),
        ("lean", 5),
        ("lean", 12),
    ]
    for row in result["rows"]:
        assert row["delivered"] == row["posts_seen_by_api"] == row["recipients"]
        assert row["items_read"] == row["record_items_read"] == row["recipients"] and row["pages"] >= 1
        assert 1 <= row["max_in_flight"] <= 4
        assert all(
            finite(row[k])
            for k in ("handler_s", "query_s", "record_query_s", "fanout_s", "ideal_s", "sequential_s")
        )
    assert [r["sequential_extrapolated"] for r in result["rows"][:2]] == [False, True]
    assert [r["pool"] for r in result["sweep"]] == [2, 4]
    assert result["best_pool"] in (2, 4)
    assert "fan-out" in fanout.render(result)
    check_written("fanout", result, tmp_path)


def test_bench_post_cost_tiny(tmp_path: Path) -> None:
    result = post_cost.run(post_cost.PostCostConfig(posts=5, rounds=1, profile_posts=5))
    assert result["rows"][0]["client"] == "boto3"
    assert all(finite(r["cpu_ms_per_post"]) for r in result["rows"])
    assert result["profile"]["by_area_ms_per_post"]
    assert "CPU per post_to_connection" in post_cost.render(result)
    check_written("post", result, tmp_path)


def test_bench_coldstart_tiny(tmp_path: Path) -> None:
    config = coldstart.ColdStartConfig(
        functions=("disconnect",), import_rounds=1, runtime_rounds=1, warm_invocations=1
    )
    result = coldstart.run(config)
    whats = [r["what"] for r in result["imports"]["rows"]]
    assert "import boto3" in whats and "disconnect: import app" in whats
    [row] = result["runtime"]["rows"]
    assert row["function"] == "disconnect"
    assert all(finite(row[k]) for k in ("init_ms", "first_invoke_ms", "warm_invoke_ms", "cold_total_ms"))
    assert "awslambdaric" in coldstart.render(result)
    check_written("coldstart", result, tmp_path)


def test_bench_e2e_tiny(tmp_path: Path) -> None:
    result = e2e.run(e2e.E2EConfig(clients=(3,), messages=2, senders=2, workers=1, timeout_s=30))
    [row] = result["rows"]
    for side in ("stack", "floor"):
        assert row[side]["messages"] == 2
        assert row[side]["delivered"] == row[side]["expected"] == 6
        assert row[side]["lost"] == 0 and row[side]["duplicated"] == 0
    assert finite(row["p50_ratio"])
    assert "floor" in e2e.render(result)
    check_written("e2e", result, tmp_path)


def test_bench_connect_tiny(tmp_path: Path) -> None:
    result = connect_rate.run(connect_rate.ConnectConfig(connections=3, concurrency=(2,), workers=1))
    [row] = result["rows"]
    assert row["accepted"] == 3 and row["refused"] == 0
    assert finite(row["per_s"])
    assert "connect rate" in connect_rate.render(result)
    check_written("connect", result, tmp_path)


def test_bench_cli_runs_one_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--results-dir", str(tmp_path), "post", "--posts", "2", "--rounds", "1", "--profile-posts", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "CPU per post_to_connection" in out
    assert (tmp_path / "post-latest.json").exists()
