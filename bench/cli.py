"""``python -m bench [NAME ...] [options]``: run benchmarks, print their tables, write JSON results.

With no name the default suite runs (every benchmark with its defaults, bounded to a few minutes). Each
benchmark's options are the fields of its config dataclass (``--field-name``, defaults shown by
``python -m bench NAME --help``); comma-separated lists for tuple fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
import typing
from pathlib import Path
from typing import Any, NamedTuple

from bench import env
from bench.report import machine, machine_line, write


class Benchmark(NamedTuple):
    name: str
    module: str  # bench.<module> with run(config) -> dict and render(dict) -> str
    config: str  # its config dataclass
    help: str


# In the order the default suite runs them; a new benchmark is one line here.
BENCHMARKS = (
    Benchmark("fanout", "bench.fanout", "FanoutConfig", "send_message fan-out vs sequential vs ideal"),
    Benchmark("post", "bench.post_cost", "PostCostConfig", "CPU per post_to_connection: ours vs peers"),
    Benchmark("lambda", "bench.lambda_size", "LambdaSizeConfig", "the broadcast under Lambda sizes' CPU"),
    Benchmark("coldstart", "bench.coldstart", "ColdStartConfig", "import time vs boto3; awslambdaric"),
    Benchmark("e2e", "bench.e2e", "E2EConfig", "K clients through the local stack vs a websockets floor"),
    Benchmark("connect", "bench.connect_rate", "ConnectConfig", "$connect rate through the local stack"),
    Benchmark("history", "bench.history", "HistoryBenchConfig", "the store's cost; history pages"),
    Benchmark("shards", "bench.shards", "ShardsConfig", "sharded fan-out (SQS + fanout) vs one invocation"),
)
FLAGS = {"memory_mb": "--memory", "timeout_s": "--timeout", "profile_dir": "--profile"}  # shorter names
CHOICES = {"sweep_client": ("boto3", "lean"), "dynamodb": ("embedded", "process")}


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def words(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse(hint: Any) -> Any:
    """The argparse ``type`` for a config field's annotation."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return ints if args[0] is int else words
    return _parse(args[0]) if args else hint


def _add(sub: Any, bench: Benchmark) -> None:
    config = getattr(importlib.import_module(bench.module), bench.config)
    hints = typing.get_type_hints(config)
    p = sub.add_parser(bench.name, help=bench.help)
    for f in dataclasses.fields(config):
        flag = FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        p.add_argument(
            flag,
            dest=f.name,
            type=_parse(hints[f.name]),
            default=f.default,
            choices=CHOICES.get(f.name),
            help="default: %(default)s",
        )

    def make(a: argparse.Namespace) -> Any:
        return config(**{f.name: getattr(a, f.name) for f in dataclasses.fields(config)})

    p.set_defaults(module=bench.module, make=make)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--results-dir", type=Path, default=None, help="where JSON results go (bench/results)")
    sub = p.add_subparsers(dest="name")
    for bench in BENCHMARKS:
        _add(sub, bench)
    return p


def run_one(name: str, args: argparse.Namespace, results_dir: Path | None) -> dict[str, Any]:
    module = importlib.import_module(args.module)
    started = time.perf_counter()
    result: dict[str, Any] = module.run(args.make(args))
    result["elapsed_s"] = time.perf_counter() - started
    path = write(name, result, results_dir)
    print(module.render(result))
    print(f"({name}: {result['elapsed_s']:.0f} s; results: {path})\n", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    env.setup()
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    print(machine_line(machine()), flush=True)
    names = [b.name for b in BENCHMARKS]
    if not any(a in names for a in argv):
        options = top.parse_args(argv)
        for name in names:
            run_one(name, top.parse_args([*argv, name]), options.results_dir)
        return 0
    args = top.parse_args(argv)
    run_one(args.name, args, args.results_dir)
    return 0
