"""Section 3: cold start of each function.

1. Import time in a fresh interpreter (the function's own environment and PYTHONPATH, as its image):
   ``import app`` next to ``import boto3`` alone and ``boto3`` + one client, measured in the same rounds,
   interleaved; plus the whole process (interpreter start to exit) for ``pass``.
2. Through ``awslambdaric`` in local_stack's Lambda runtime (local_stack/runtime.py, one worker per
   execution environment): init (spawn to the first answer, less that invocation's duration), the first
   invocation, and warm invocations of the same process. DynamoDB is the stack's embedded moto; the
   management API is the kit's fake without latency.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.env import LAMBDAS, MEMBERSHIPS_TABLE, ROOT, functions
from bench.report import median, table

PROBES = {
    "python (pass)": "pass",
    "import boto3": "import boto3",
    "boto3 + dynamodb client": "import boto3; boto3.client('dynamodb')",
}
# Imported by botocore.client/handlers/waiter and boto3.session/resources/dynamodb at module level (so by
# ``import boto3`` alone): ~3 + ~1.7 ms of a function's ~240 ms import (bench/README.md). Keeping them out
# would mean replacing private modules of both libraries in sys.modules; they are measured, not removed.
DETAILED = ("botocore.docs", "boto3.docs")
TIMER = (
    "import time, json, sys, gc\n"
    "gc_s = [0.0]\n"  # time inside collections: each start subtracts the clock, each stop adds it
    "def _gc(phase, info):\n"
    "    gc_s[0] += time.perf_counter() if phase == 'stop' else -time.perf_counter()\n"
    "gc.callbacks.append(_gc)\n"
    "t0, c0 = time.perf_counter(), time.process_time()\n{code}\n"
    "gc.callbacks.remove(_gc)\n"
    "print(json.dumps({{'import_s': time.perf_counter() - t0, 'cpu_s': time.process_time() - c0, "
    "'gc_s': gc_s[0], 'docs': 'botocore.docs' in sys.modules}}))"
)


@dataclass(frozen=True, kw_only=True)
class ColdStartConfig:
    functions: tuple[str, ...] = ()
    import_rounds: int = 5
    runtime_rounds: int = 3
    warm_invocations: int = 5


def function_env(name: str, *, callback_url: str, dynamodb_endpoint: str) -> dict[str, str]:
    """The function's environment as the local stack builds it from Terraform (local_stack.stack)."""
    from local_stack.config import StackConfig
    from local_stack.stack import function_environment
    from local_stack.terraform import load_model

    config = StackConfig()
    model = load_model(config.terraform_dirs)
    env = function_environment(
        config,
        model,
        model.functions[name],
        callback_url=callback_url,
        dynamodb_endpoint=dynamodb_endpoint,
        task_root=LAMBDAS / name,
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an image ships compiled bytecode; don't recompile each time
    env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    if "RATE_LIMIT_PER_SECOND" in env:
        env["RATE_LIMIT_PER_SECOND"] = "0"  # one sender invokes back to back: measure, don't limit
    return env


def _python(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a function's environment, output captured (60 s at most)."""
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _timed_process(code: str, env: dict[str, str], cwd: Path) -> tuple[float, float, bool, float, float]:
    start = time.perf_counter()
    done = _python(["-c", TIMER.format(code=code)], env, cwd)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed: {done.stderr[-2000:]}")
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    return seen["import_s"], wall, seen["docs"], seen["cpu_s"], seen["gc_s"]


def import_times(names: list[str], rounds: int) -> dict[str, Any]:
    envs = {
        n: function_env(n, callback_url="http://127.0.0.1:9/dev", dynamodb_endpoint="http://127.0.0.1:9")
        for n in names
    }
    base_env = next(iter(envs.values())) if envs else dict(os.environ)
    probes: dict[str, tuple[str, dict[str, str], Path]] = {
        label: (code, base_env, ROOT) for label, code in PROBES.items()
    }
    for n in names:
        probes[f"{n}: import app"] = ("import app", envs[n], LAMBDAS / n)
    for n in names:  # shared.runtime pauses the collector only in a Lambda environment: the same, without it
        plain = {k: v for k, v in envs[n].items() if k != "AWS_LAMBDA_FUNCTION_NAME"}
        probes[f"{n}: gc not paused"] = ("import app", plain, LAMBDAS / n)
    samples: dict[str, list[tuple[float, float, bool, float, float]]] = {label: [] for label in probes}
    for code, env, cwd in probes.values():  # one unmeasured round: bytecode and page cache
        _timed_process(code, env, cwd)
    for _ in range(rounds):
        for label, (code, env, cwd) in probes.items():
            samples[label].append(_timed_process(code, env, cwd))
    boto = median([s[0] for s in samples["import boto3"]])
    rows = []
    for label, values in samples.items():
        imp = median([v[0] for v in values])
        rows.append(
            {
                "what": label,
                "import_ms": imp * 1000,
                "process_ms": median([v[1] for v in values]) * 1000,
                "over_boto3_ms": None if label == "python (pass)" else (imp - boto) * 1000,
                "vs_boto3": None if label == "python (pass)" else imp / boto,
                "botocore_docs": any(v[2] for v in values),
                "import_cpu_ms": median([v[3] for v in values]) * 1000,
                "gc_ms": median([v[4] for v in values]) * 1000,
            }
        )
    return {
        "rounds": rounds,
        "rows": rows,
        "top_imports": {n: top_imports(envs[n], LAMBDAS / n) for n in names},
    }


def top_imports(env: dict[str, str], cwd: Path, limit: int = 8) -> list[tuple[str, float]]:
    """Packages by the self time of their modules' imports (``-X importtime``, one run), in ms; the
    subpackages in DETAILED are listed on their own (botocore.docs: what keeping it out would save)."""
    done = _python(["-X", "importtime", "-c", "import app"], env, cwd)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if not own.isdigit():
            continue
        package = next((d for d in DETAILED if name == d or name.startswith(d + ".")), name.split(".")[0])
        totals[package] = totals.get(package, 0.0) + int(own) / 1000
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:limit]
    return (
        top
        + [(d, totals.get(d, 0.0)) for d in DETAILED if d not in dict(top)]
        + [("all", sum(totals.values()))]
    )


@functools.cache
def _route_keys() -> dict[str, str | None]:
    from local_stack.terraform import load_model

    return {name: spec.route_key for name, spec in load_model([ROOT / "terraform"]).functions.items()}


def _event(name: str, secret: str, seq: int) -> dict[str, Any]:
    from bench.functions import connect_event, disconnect_event, message_event
    from bench.seed import connection_id
    from local_stack.testing import make_token

    cid = f"COLD{seq:011d}="
    if name == "connect":
        return connect_event(
            {"token": make_token("alice", secret=secret), "room_id": "cold"}, connection_id=cid
        )
    if name == "disconnect":
        return disconnect_event(connection_id=cid)
    if name == "default":
        return message_event("not json", connection_id=cid, route="$default")
    # every other function is a route named after its action (sendMessage, getHistory, join, ...): its
    # frame from the sender, a member of room "cold"
    route = _route_keys().get(name) or name
    body = {"action": route, "room_id": "cold", "message": "hi", "to_user_id": "bob", "user_id": "bob"}
    return message_event(body, connection_id=connection_id("cold", 0), route=route)


def runtime_times(names: list[str], rounds: int, warm: int) -> dict[str, Any]:
    """Each function in ``rounds`` fresh execution environments of local_stack's Lambda runtime (one
    worker each): init = spawn to answer minus the first invocation's own duration."""
    from bench.functions import create_tables
    from bench.seed import seed_room
    from local_stack.config import StackConfig
    from local_stack.dynamodb import EmbeddedDynamoDB, dynamodb_client
    from local_stack.runtime import LambdaRuntime
    from local_stack.testing import FakeManagementApiProcess

    secret = StackConfig().jwt_secret
    embedded = EmbeddedDynamoDB()
    endpoint = embedded.start()
    try:
        client = dynamodb_client(endpoint, "us-east-1")
        create_tables(client)
        seed_room(client, "cold", 10, memberships_table=MEMBERSHIPS_TABLE)
        with FakeManagementApiProcess(latency=0.0, stage="dev") as api:
            envs = {
                n: function_env(n, callback_url=api.endpoint_url, dynamodb_endpoint=endpoint) for n in names
            }
            failed: dict[str, str] = {}
            rows = asyncio.run(_environments(LambdaRuntime, envs, secret, rounds, warm, failed))
    finally:
        embedded.stop()
    return {"rows": rows, "warm_invocations": warm, "failed": failed}


async def _environments(
    runtime_class: Any,
    envs: dict[str, dict[str, str]],
    secret: str,
    rounds: int,
    warm: int,
    failed: dict[str, str],
) -> list[dict[str, Any]]:
    runtime = runtime_class(log=lambda name, line: None)
    await runtime.start()
    seq = 0
    rows: list[dict[str, Any]] = []
    try:
        for name, env in envs.items():
            samples: list[dict[str, float]] = []
            for _ in range(rounds):
                pool = await runtime.add_function(
                    name, task_root=LAMBDAS / name, env=env, timeout_s=30, max_workers=1, min_workers=0
                )
                try:
                    events = [_event(name, secret, seq + i) for i in range(1 + warm)]
                    seq += len(events)
                    spawned = time.perf_counter()
                    first = await pool.invoke(events[0])
                    cold_ms = (time.perf_counter() - spawned) * 1000
                    warm_ms = (
                        [(await pool.invoke(event)).duration_ms for event in events[1:]] if first.ok else []
                    )
                finally:
                    await pool.close()
                if (
                    not first.ok
                ):  # one function's failure (say, an event it does not take) is a row, not the end
                    failed[name] = f"{first.error_type}: {first.payload[:300]!r}"
                    break
                samples.append(
                    {
                        "init_ms": cold_ms - first.duration_ms,
                        "first_invoke_ms": first.duration_ms,
                        "cold_total_ms": cold_ms,
                        "warm_invoke_ms": median(warm_ms),
                    }
                )
            if samples:
                rows.append(
                    {
                        "function": name,
                        "rounds": rounds,
                        **{k: median([s[k] for s in samples]) for k in samples[0]},
                    }
                )
    finally:
        await runtime.close()
    return rows


def run(config: ColdStartConfig) -> dict[str, Any]:
    names = list(config.functions) or functions()
    out: dict[str, Any] = {"config": asdict(config)}
    out["imports"] = import_times(names, config.import_rounds)
    if config.runtime_rounds:
        out["runtime"] = runtime_times(names, config.runtime_rounds, config.warm_invocations)
    return out


def render(result: dict[str, Any]) -> str:
    imports = result["imports"]
    parts = [
        table(
            f"cold start: import in a fresh interpreter (median of {imports['rounds']}, interleaved)",
            [
                "what",
                "import ms",
                "CPU ms",
                "in gc ms",
                "process ms",
                "over boto3 ms",
                "x boto3",
                "botocore.docs",
            ],
            [
                [
                    r["what"],
                    r["import_ms"],
                    r.get("import_cpu_ms"),
                    r.get("gc_ms"),
                    r["process_ms"],
                    r["over_boto3_ms"],
                    r["vs_boto3"],
                    "loaded" if r.get("botocore_docs") else "-",
                ]
                for r in imports["rows"]
            ],
        )
    ]
    tops = imports.get("top_imports") or {}
    if tops:
        parts.append(
            "import self time by package (-X importtime, one run, ms):\n"
            + "\n".join(
                f"  {fn}: " + ", ".join(f"{mod} {ms:.{1 if ms < 10 else 0}f}" for mod, ms in top)
                for fn, top in tops.items()
            )
        )
    runtime = result.get("runtime")
    if runtime:
        parts.append(
            table(
                "cold start through awslambdaric (median of "
                f"{runtime['rows'][0]['rounds'] if runtime['rows'] else 0} "
                f"environments; warm = median of {runtime['warm_invocations']})",
                [
                    "function",
                    "init ms",
                    "first invoke ms",
                    "spawn->answer ms",
                    "warm invoke ms",
                    "first/warm",
                ],
                [
                    [
                        r["function"],
                        r["init_ms"],
                        r["first_invoke_ms"],
                        r["cold_total_ms"],
                        r["warm_invoke_ms"],
                        r["first_invoke_ms"] / r["warm_invoke_ms"] if r["warm_invoke_ms"] else None,
                    ]
                    for r in runtime["rows"]
                ],
            )
        )
        parts += [
            f"{name}: its first invocation failed ({why})" for name, why in runtime.get("failed", {}).items()
        ]
    return "\n\n".join(parts)
