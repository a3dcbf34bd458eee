"""Each benchmark once, in a tiny configuration, so none can rot. Asserts shapes and counts, never timings."""

from __future__ import annotations

import asyncio
import json
import math
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import cli, coldstart, connect_rate, e2e, fanout, history, lambda_size, post_cost
from bench.report import write
from local_stack.dynamodb import dynamodb_client


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    # Benchmarks set the functions' variables in os.environ; other tests must not see them.
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
    expected = [(client, n) for client in ("boto3", "lean") for n in (5, 12)]
    assert [(r["client"], r["recipients"]) for r in result["rows"]] == expected
    for row in result["rows"]:
        assert row["delivered"] == row["posts_seen_by_api"] == row["recipients"]
        assert row["items_read"] == row["record_items_read"] == row["recipients"] and row["pages"] >= 1
        assert 1 <= row["max_in_flight"] <= 4
        timings = ("handler_s", "query_s", "record_query_s", "fanout_s", "ideal_s", "sequential_s")
        assert all(finite(row[k]) for k in timings)
    assert [r["sequential_extrapolated"] for r in result["rows"][:2]] == [False, True]
    assert [r["pool"] for r in result["sweep"]] == [2, 4]
    assert result["best_pool"] in (2, 4)
    assert "fan-out" in fanout.render(result)
    check_written("fanout", result, tmp_path)


@pytest.fixture(scope="module")
def post_cost_tiny() -> dict[str, Any]:
    config = post_cost.PostCostConfig(
        posts=5,
        rounds=1,
        profile_posts=5,
        fanout_posts=6,
        fanout_pool=2,
        fanout_latency_ms=1,
        fanout_rounds=1,
        seed_loop_posts=3,
    )
    return post_cost.run(config)


def test_bench_post_cost_tiny(post_cost_tiny: dict[str, Any], tmp_path: Path) -> None:
    result = post_cost_tiny
    assert result["rows"][0]["client"] == "boto3"
    assert all(finite(r["cpu_ms_per_post"]) for r in result["rows"])
    assert [r["posts"] for r in result["fanout"]] == [3, 6, 6, 6, 6, 6, 6]
    assert all(finite(r["cpu_vs_floor"]) for r in result["fanout"])
    assert "peers in a fan-out" in post_cost.render(result)
    assert result["profile"]["by_area_ms_per_post"]
    assert "CPU per post_to_connection" in post_cost.render(result)
    check_written("post", result, tmp_path)


def test_bench_post_cost_has_both_transports_signed_and_unsigned(post_cost_tiny: dict[str, Any]) -> None:
    # The shipped client is libcurl: the urllib3 client it replaced and an unsigned floor on each
    # transport are rows of both tables, and each floor column divides by the row it names.
    result = post_cost_tiny
    sequential = {r["client"]: r for r in result["rows"]}
    assert list(sequential) == [
        "boto3",
        post_cost.LEAN,
        post_cost.URLLIB3,
        post_cost.RAW_URLLIB3,
        post_cost.UNSIGNED_SAME_CALL,
        post_cost.UNSIGNED_CURL,
    ]
    assert sequential[post_cost.RAW_URLLIB3]["cpu_vs_floor"] == 1.0
    assert sequential[post_cost.UNSIGNED_CURL]["cpu_vs_curl_floor"] == 1.0
    assert all(finite(r["cpu_vs_curl_floor"]) for r in result["rows"])
    fanout_rows = {r["client"]: r for r in result["fanout"]}
    for name in (
        "before libcurl: SigV4 + urllib3 + threads (Sender)",
        post_cost.FANOUT_URLLIB3_FLOOR,
        post_cost.FANOUT_CURL_FLOOR,
        "ours: Sender as shipped (SigV4 + libcurl)",
    ):
        assert name in fanout_rows
    assert fanout_rows[post_cost.FANOUT_URLLIB3_FLOOR]["cpu_vs_floor"] == 1.0
    assert fanout_rows[post_cost.FANOUT_CURL_FLOOR]["cpu_vs_curl_floor"] == 1.0
    assert all(finite(r["cpu_vs_curl_floor"]) for r in result["fanout"])
    assert result["profile_urllib3"]["by_area_ms_per_post"]
    text = post_cost.render(result)
    for header in ("vs raw urllib3", "vs unsigned libcurl", "CPU vs urllib3 floor", "CPU vs libcurl floor"):
        assert header in text
    assert "the urllib3 client's (before libcurl)" in text


def test_bench_unsigned_libcurl_floor_is_the_shipped_call_without_signing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The floor is worth its label only if it sends through the shipped client's own _send (same handle
    # pool, options, Host header, path and body) and differs by the SigV4 headers alone.
    from shared.management_api import ManagementApiClient
    from shared.sender import management_client

    sent: list[tuple[str, dict[str, str], bytes]] = []

    def send(self: Any, path: str, headers: dict[str, str], data: bytes) -> tuple[int, dict[str, str], bytes]:
        sent.append((path, headers, data))
        return 200, {}, b""

    monkeypatch.setattr(ManagementApiClient, "_send", send)
    endpoint = "http://127.0.0.1:9/dev"  # never reached: _send is replaced
    management_client(endpoint, pool_size=1).post_to_connection(ConnectionId="a=b", Data=post_cost.DATA)
    post_cost.UnsignedCurlClient(endpoint, pool_size=1).post_to_connection(
        ConnectionId="a=b", Data=post_cost.DATA
    )
    (shipped_path, shipped_headers, shipped_data), (floor_path, floor_headers, floor_data) = sent
    assert (
        (floor_path, floor_data)
        == (shipped_path, shipped_data)
        == ("/dev/@connections/a%3Db", post_cost.DATA)
    )
    assert floor_headers == {} and "Authorization" in shipped_headers


def test_bench_urllib3_peer_posts_and_fails_as_the_shipped_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-libcurl peer is a working client: it delivers, and a 410 or a refused connection raise what
    the shipped client raises (the sender would treat its rows' outcomes alike)."""
    from botocore.exceptions import ClientError, EndpointConnectionError

    from bench.urllib3_client import Urllib3ManagementApiClient
    from local_stack.testing import FakeManagementApi
    from shared.sender import classify, management_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    with FakeManagementApi() as api:
        api.live.add("LIVE=")
        peer = Urllib3ManagementApiClient(api.endpoint_url, pool_size=1)
        peer.post_to_connection(ConnectionId="LIVE=", Data=b"{}")
        assert api.delivered == [("LIVE=", b"{}")]
        assert "Authorization" in api.seen[0].headers
        for client in (peer, management_client(api.endpoint_url, pool_size=1)):
            with pytest.raises(ClientError) as gone:
                client.post_to_connection(ConnectionId="GONE=", Data=b"{}")
            assert gone.value.response["Error"]["Code"] == "GoneException"
    for client in (Urllib3ManagementApiClient("http://127.0.0.1:9/dev", pool_size=1),
                   management_client("http://127.0.0.1:9/dev", pool_size=1)):  # fmt: skip
        with pytest.raises(EndpointConnectionError) as refused:
            client.post_to_connection(ConnectionId="A=", Data=b"{}")
        assert classify(refused.value) == classify(EndpointConnectionError(endpoint_url="x"))


@pytest.mark.parametrize("cgroup", [True, False])
def test_bench_lambda_size_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cgroup: bool) -> None:
    if not cgroup:  # no writable cgroup: the run falls back to an estimate and says so
        monkeypatch.setattr(lambda_size, "CGROUP_CPU", tmp_path / "no-cgroup-here")
    config = lambda_size.LambdaSizeConfig(
        memory_mb=(512, 1769), recipients=(3, 7), latency_ms=1, pool=2, repeats=1, shipped_mb=512
    )
    result = lambda_size.run(config)
    expected = [(memory, n) for memory in (512, 1769) for n in (3, 7)]
    assert [(r["memory_mb"], r["recipients"]) for r in result["rows"]] == expected
    for row in result["rows"]:
        assert row["delivered"] == row["recipients"]
        assert all(finite(row[k]) for k in ("wall_s", "ideal_s", "over_ideal", "cost_per_million_usd"))
    if not cgroup:
        assert {r["emulation"] for r in result["rows"]} == {"estimated"}
        assert "no writable cgroup" in lambda_size.render(result)
    assert list(lambda_size.CGROUP_CPU.glob("bench-lambda-*")) == []  # every group removed
    check_written("lambda", result, tmp_path)


def test_lambda_cost_and_cpu_share() -> None:
    assert lambda_size.vcpu(1769) == 1.0 and lambda_size.vcpu(3538) == 1.0
    assert lambda_size.vcpu(512) == pytest.approx(0.2894, abs=1e-4)
    # 1 s at 1 GB: $0.0000166667 + $0.0000002 per request, times a million; billed per started ms
    assert lambda_size.cost_per_million(1.0, 1024) == pytest.approx(16.8667, abs=1e-3)
    assert lambda_size.cost_per_million(0.0001, 1024) == lambda_size.cost_per_million(0.001, 1024)


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


def test_coldstart_invokes_fanout_and_publish_with_events_they_take() -> None:
    """fanout takes an SQS batch of shard jobs, publish a direct invocation: neither a gateway event."""
    result = coldstart.runtime_times(["fanout", "publish"], rounds=1, warm=1)
    assert result["failed"] == {}
    assert [r["function"] for r in result["rows"]] == ["fanout", "publish"]


def test_coldstart_goes_on_past_a_function_whose_first_invocation_fails() -> None:
    from local_stack.runtime import InvokeResult

    class Fake:  # the runtime, and each function's pool
        def __init__(self, name: str = "runtime", **kwargs: Any) -> None:
            self.name = name

        async def start(self) -> None:
            pass

        async def add_function(self, name: str, **kwargs: Any) -> Fake:
            return Fake(name)

        async def invoke(self, event: dict[str, Any]) -> InvokeResult:
            if self.name == "connect":
                return InvokeResult(
                    b'{"errorMessage": "no such event"}', "Runtime.Unhandled", duration_ms=1.0
                )
            if self.name == "publish":  # answered, but a refusal: its time is not the function's
                return InvokeResult(b'{"ok": false, "error": {"code": "invalid_request"}}', duration_ms=1.0)
            return InvokeResult(b"{}", duration_ms=2.0)

        async def close(self) -> None:
            pass

    failed: dict[str, str] = {}
    envs: dict[str, dict[str, str]] = {"connect": {}, "publish": {}, "disconnect": {}}
    rows = asyncio.run(coldstart._environments(Fake, envs, "secret", 2, 1, failed))
    assert [r["function"] for r in rows] == ["disconnect"] and rows[0]["first_invoke_ms"] == 2.0
    assert list(failed) == ["connect", "publish"] and "Runtime.Unhandled" in failed["connect"]
    assert failed["publish"].startswith("refused: ")
    runtime = {"rows": rows, "warm_invocations": 1, "failed": failed}
    rendered = coldstart.render({"imports": {"rounds": 1, "rows": []}, "runtime": runtime})
    assert "connect: its first invocation failed (Runtime.Unhandled" in rendered


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


def test_bench_e2e_with_moto_in_a_process_of_its_own() -> None:
    with e2e.local_stack(1, "process") as stack:
        endpoint = stack.dynamodb_endpoint
        assert endpoint != stack.ready.get("ws_url") and stack.pid != 0
        tables = dynamodb_client(endpoint, "us-east-1").list_tables()["TableNames"]
        assert "chat_connections" in tables  # the stack created its tables in the other process
        assert e2e.wait_for_disconnects(endpoint, 5) == 0
    with pytest.raises(OSError):  # the moto process stopped with the stack
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)


def test_bench_connect_tiny(tmp_path: Path) -> None:
    result = connect_rate.run(connect_rate.ConnectConfig(connections=3, concurrency=(2,), workers=1))
    [row] = result["rows"]
    assert row["accepted"] == 3 and row["refused"] == 0
    assert finite(row["per_s"])
    assert "connect rate" in connect_rate.render(result)
    check_written("connect", result, tmp_path)


def test_bench_history_tiny(tmp_path: Path) -> None:
    config = history.HistoryBenchConfig(
        recipients=(1, 5),
        latency_ms=1,
        pool=4,
        repeats=1,
        stored_messages=20,
        page_limits=(10,),
        requests=2,
        workers=1,
    )
    result = history.run(config)
    assert [r["recipients"] for r in result["store"]] == [1, 5]
    for row in result["store"]:
        assert all(finite(row[k]) for k in ("broadcast_only_s", "stored_s", "stored_client_msg_id_s"))
        assert finite(row["stored_over_broadcast"]) and finite(row["client_msg_id_over_broadcast"])
    pages = [(r["page"], r["limit"]) for r in result["history"]]
    assert pages == [("newest", 10), ("before", 10), ("after", 10)]
    assert [r["messages"] for r in result["history"]] == [10, 10, 9]  # 20 stored; "after" the 11th: 9 left
    assert all(finite(r["p50_ms"]) for r in result["history"])
    assert "store cost" in history.render(result) and "history page latency" in history.render(result)
    check_written("history", result, tmp_path)


def test_bench_cli_runs_one_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--results-dir", str(tmp_path), "post", "--posts", "2", "--rounds", "1", "--profile-posts", "0"]
    argv += ["--fanout-posts", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "CPU per post_to_connection" in out
    assert (tmp_path / "post-latest.json").exists()


def test_cpu_group_quota_is_the_memory_sizes_share_of_one_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lambda_size, "CGROUP_CPU", tmp_path)
    with lambda_size.cpu_group(512) as group:
        assert group is not None and group.parent == tmp_path
        assert (group / "cpu.cfs_period_us").read_text() == "100000"
        assert (group / "cpu.cfs_quota_us").read_text() == "28943"  # 100 ms x 512 / 1,769
        for child in group.iterdir():  # a real cgroup's files vanish with it; these are plain files
            child.unlink()
    assert not group.exists()
