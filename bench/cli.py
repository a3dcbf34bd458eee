"""``python -m bench [NAME ...] [options]``: run benchmarks, print their tables, write JSON results.

With no name the default suite runs (every benchmark with its defaults, bounded to a few minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import env
from bench.report import machine, machine_line, write


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def words(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _fanout(sub: Any) -> None:
    p = sub.add_parser("fanout", help="section 1: send_message fan-out vs sequential vs ideal")
    p.add_argument("--recipients", type=ints, default=(100, 1000, 5000), help="N values (100,1000,5000)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="fake PostToConnection latency L (20)")
    p.add_argument("--pool", type=int, default=32, help="BROADCAST_CONCURRENCY for the main table (32)")
    p.add_argument("--repeats", type=int, default=3, help="handler runs per N, median reported (3)")
    p.add_argument(
        "--sequential-max", type=int, default=1000, help="N up to this: sequential measured in full"
    )
    p.add_argument(
        "--sequential-sample", type=int, default=500, help="larger N: posts measured, extrapolated"
    )
    p.add_argument(
        "--sweep-recipients", type=int, default=1000, help="N of the pool sweep; 0 skips it (1000)"
    )
    p.add_argument("--sweep-pools", type=ints, default=(8, 16, 32, 64, 128, 200))
    p.add_argument("--sweep-repeats", type=int, default=1)
    p.add_argument("--sweep-client", default="lean", choices=("boto3", "lean"))
    p.add_argument(
        "--clients", type=words, default=("boto3", "lean"), help="lean (shipped), boto3 (previous)"
    )
    p.add_argument(
        "--page-size", type=int, default=None, help="Query Limit per page (default: DynamoDB's 1 MB)"
    )
    p.add_argument("--throttle-rps", type=int, default=10_000)

    def make(a: argparse.Namespace) -> Any:
        from bench.fanout import FanoutConfig

        return FanoutConfig(
            recipients=a.recipients,
            latency_ms=a.latency_ms,
            pool=a.pool,
            repeats=a.repeats,
            sequential_max=a.sequential_max,
            sequential_sample=a.sequential_sample,
            sweep_recipients=a.sweep_recipients,
            sweep_pools=a.sweep_pools,
            sweep_repeats=a.sweep_repeats,
            sweep_client=a.sweep_client,
            throttle_rps=a.throttle_rps,
            page_size=a.page_size,
            clients=a.clients,
        )

    p.set_defaults(module="bench.fanout", make=make)


def _post(sub: Any) -> None:
    p = sub.add_parser("post", help="CPU per post_to_connection: shipped client vs boto3 vs raw; cProfile")
    p.add_argument("--posts", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile-posts", type=int, default=300, help="0 skips the cProfile table")
    p.add_argument("--fanout-posts", type=int, default=1000, help="N of the peers' fan-out; 0 skips it")
    p.add_argument("--fanout-pool", type=int, default=32)
    p.add_argument("--fanout-latency-ms", type=float, default=20.0)
    p.add_argument("--fanout-rounds", type=int, default=5)
    p.add_argument("--seed-loop-posts", type=int, default=100, help="posts the sequential seed loop makes")

    def make(a: argparse.Namespace) -> Any:
        from bench.post_cost import PostCostConfig

        return PostCostConfig(
            posts=a.posts,
            rounds=a.rounds,
            profile_posts=a.profile_posts,
            fanout_posts=a.fanout_posts,
            fanout_pool=a.fanout_pool,
            fanout_latency_ms=a.fanout_latency_ms,
            fanout_rounds=a.fanout_rounds,
            seed_loop_posts=a.seed_loop_posts,
        )

    p.set_defaults(module="bench.post_cost", make=make)


def _lambda_size(sub: Any) -> None:
    p = sub.add_parser("lambda", help="the broadcast under the CPU quota of Lambda memory sizes; cost per 1M")
    p.add_argument("--memory", type=ints, default=(512, 1024, 1769), help="memory sizes, MB (512,1024,1769)")
    p.add_argument("--recipients", type=ints, default=(100, 1000, 5000), help="N values (100,1000,5000)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="fake PostToConnection latency L (20)")
    p.add_argument("--pool", type=int, default=32, help="BROADCAST_CONCURRENCY (32)")
    p.add_argument("--repeats", type=int, default=3, help="broadcasts per N, median reported (3)")

    def make(a: argparse.Namespace) -> Any:
        from bench.lambda_size import LambdaSizeConfig

        return LambdaSizeConfig(
            memory_mb=a.memory,
            recipients=a.recipients,
            latency_ms=a.latency_ms,
            pool=a.pool,
            repeats=a.repeats,
        )

    p.set_defaults(module="bench.lambda_size", make=make)


def _coldstart(sub: Any) -> None:
    p = sub.add_parser("coldstart", help="section 3: import time vs boto3; awslambdaric first vs warm")
    p.add_argument("--functions", type=words, default=(), help="default: every lambdas/*/app.py")
    p.add_argument("--import-rounds", type=int, default=5)
    p.add_argument(
        "--runtime-rounds", type=int, default=3, help="execution environments per function; 0 skips"
    )
    p.add_argument("--warm-invocations", type=int, default=5)

    def make(a: argparse.Namespace) -> Any:
        from bench.coldstart import ColdStartConfig

        return ColdStartConfig(
            functions=a.functions,
            import_rounds=a.import_rounds,
            runtime_rounds=a.runtime_rounds,
            warm_invocations=a.warm_invocations,
        )

    p.set_defaults(module="bench.coldstart", make=make)


def _e2e(sub: Any) -> None:
    p = sub.add_parser("e2e", help="section 2: K clients through the local stack vs a bare websockets floor")
    p.add_argument("--clients", type=ints, default=(10, 100, 200, 500), help="K values (10,100,200,500)")
    p.add_argument("--messages", type=int, default=12, help="M messages per K (12)")
    p.add_argument("--senders", type=int, default=4, help="clients sending at once (4)")
    p.add_argument(
        "--workers", type=int, default=4, help="local stack: concurrent executions per function (4)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for deliveries per K (60)")
    p.add_argument("--profile", type=Path, default=None, help="py-spy the stack's processes into this folder")
    p.add_argument("--profile-clients", type=int, default=200, help="the K that --profile records (200)")
    p.add_argument(
        "--dynamodb",
        choices=("embedded", "process"),
        default="embedded",
        help="the stack's embedded moto (as make dev), or moto_server in its own process",
    )

    def make(a: argparse.Namespace) -> Any:
        from bench.e2e import E2EConfig

        return E2EConfig(
            clients=a.clients,
            messages=a.messages,
            senders=a.senders,
            workers=a.workers,
            timeout_s=a.timeout,
            profile_dir=a.profile,
            profile_clients=a.profile_clients,
            dynamodb=a.dynamodb,
        )

    p.set_defaults(module="bench.e2e", make=make)


def _connect(sub: Any) -> None:
    p = sub.add_parser("connect", help="section 4: $connect rate through the local stack")
    p.add_argument("--connections", type=int, default=300)
    p.add_argument("--concurrency", type=ints, default=(1, 8, 32), help="connections opened at once (1,8,32)")
    p.add_argument(
        "--workers", type=int, default=4, help="local stack: concurrent executions per function (4)"
    )
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--dynamodb", choices=("embedded", "process"), default="embedded")

    def make(a: argparse.Namespace) -> Any:
        from bench.connect_rate import ConnectConfig

        return ConnectConfig(
            connections=a.connections,
            concurrency=a.concurrency,
            workers=a.workers,
            timeout_s=a.timeout,
            dynamodb=a.dynamodb,
        )

    p.set_defaults(module="bench.connect_rate", make=make)


def _history(sub: Any) -> None:
    p = sub.add_parser("history", help="the store's cost in a broadcast; history page latency via the stack")
    p.add_argument("--recipients", type=ints, default=(1, 100, 1000), help="N values (1,100,1000)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="fake PostToConnection latency L (20)")
    p.add_argument("--pool", type=int, default=32, help="BROADCAST_CONCURRENCY (32)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved handler runs per N and variant (5)")
    p.add_argument("--stored-messages", type=int, default=300, help="messages in the history room (300)")
    p.add_argument("--page-limits", type=ints, default=(50, 100), help="getHistory limits (50,100)")
    p.add_argument("--requests", type=int, default=15, help="getHistory round trips per row, at most 15")
    p.add_argument("--workers", type=int, default=2, help="local stack: executions per function (2)")

    def make(a: argparse.Namespace) -> Any:
        from bench.history import HistoryBenchConfig

        return HistoryBenchConfig(
            recipients=a.recipients,
            latency_ms=a.latency_ms,
            pool=a.pool,
            repeats=a.repeats,
            stored_messages=a.stored_messages,
            page_limits=a.page_limits,
            requests=a.requests,
            workers=a.workers,
        )

    p.set_defaults(module="bench.history", make=make)


def _shards(sub: Any) -> None:
    p = sub.add_parser("shards", help="sharded fan-out (SQS + fanout) vs one invocation; the crossover")
    p.add_argument("--recipients", type=ints, default=(1000, 10_000, 50_000), help="N (1000,10000,50000)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="fake PostToConnection latency L (20)")
    p.add_argument("--pool", type=int, default=None, help="posts in flight per invocation (Terraform's)")
    p.add_argument("--shard-size", type=int, default=None, help="members per shard (Terraform's)")
    p.add_argument("--max-concurrency", type=int, default=None, help="fanout invocations (Terraform's)")
    p.add_argument("--repeats", type=int, default=1, help="runs per N, median reported (1)")

    def make(a: argparse.Namespace) -> Any:
        from bench.shards import ShardsConfig

        return ShardsConfig(
            recipients=a.recipients,
            latency_ms=a.latency_ms,
            pool=a.pool,
            shard_size=a.shard_size,
            max_concurrency=a.max_concurrency,
            repeats=a.repeats,
        )

    p.set_defaults(module="bench.shards", make=make)


SUITE = ("fanout", "post", "lambda", "coldstart", "e2e", "connect", "history", "shards")
BUILDERS: dict[str, Callable[[Any], None]] = {
    "history": _history,
    "shards": _shards,
    "fanout": _fanout,
    "post": _post,
    "lambda": _lambda_size,
    "coldstart": _coldstart,
    "e2e": _e2e,
    "connect": _connect,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--results-dir", type=Path, default=None, help="where JSON results go (bench/results)")
    sub = p.add_subparsers(dest="name")
    for build in BUILDERS.values():
        build(sub)
    return p


def run_one(name: str, args: argparse.Namespace, results_dir: Path | None) -> dict[str, Any]:
    import importlib

    module = importlib.import_module(args.module)
    started = time.perf_counter()
    result = module.run(args.make(args))
    result["elapsed_s"] = time.perf_counter() - started
    path = write(name, result, results_dir)
    print(module.render(result))
    print(
        f"({name}: {result['elapsed_s']:.0f} s; results: {path})\n",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    env.setup()
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    print(machine_line(machine()), flush=True)
    if not any(a in BUILDERS for a in argv):
        options = top.parse_args(argv)
        for name in SUITE:
            args = top.parse_args([*argv, name])
            run_one(name, args, options.results_dir)
        return 0
    args = top.parse_args(argv)
    run_one(args.name, args, args.results_dir)
    return 0
