"""Section 3: cold start of each function. ``import app`` in a fresh interpreter (the function's environment
and PYTHONPATH, as its image) beside ``import boto3``, interleaved; then init (spawn to the first answer less
its duration), first and warm invocations through awslambdaric in local_stack's Lambda runtime.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.env import LAMBDAS, MEMBERSHIPS_TABLE, ROOT, functions
from bench.report import Column, median, records_table

PROBES = {
    "python (pass)": "pass",
    "import boto3": "import boto3",
    "boto3 + dynamodb client": "import boto3; boto3.client('dynamodb')",
}
# Loaded by ``import boto3`` alone (module-level imports of botocore and boto3): measured on their own, not
# removed (bench/README.md, "botocore.docs stays").
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
    from bench.functions import terraform
    from local_stack.config import StackConfig
    from local_stack.stack import function_environment

    model = terraform()
    env = function_environment(
        StackConfig(),
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


def _event(name: str, secret: str, seq: int, endpoint: str) -> dict[str, Any]:
    """connect, disconnect and default: a new connection's event; fanout: an SQS batch of one shard job
    for a member of room "cold" on ``endpoint``; publish: a message to room "cold"; every other function,
    a frame of its route from a member of room "cold", with every field one of them reads."""
    from bench.functions import gateway_event, routes
    from bench.seed import connection_id
    from local_stack.queues import sqs_event_record
    from shared.shards import ShardJob, ShardMember, encode_job

    if name == "fanout":
        member = ShardMember(connection_id("cold", 0), "u0", 0)
        job = ShardJob(
            endpoint=endpoint, room_id="cold", message_id=f"cold-{seq}", data="{}", members=(member,)
        )
        message: dict[str, Any] = {
            "MessageId": f"cold-{seq}",
            "ReceiptHandle": f"cold-{seq}",
            "MD5OfBody": "-",
        }
        message |= {"Body": encode_job(job), "Attributes": {"ApproximateReceiveCount": 1}}
        return {
            "Records": [
                sqs_event_record(
                    message, queue_arn="arn:aws:sqs:us-east-1:000000000000:cold", region="us-east-1"
                )
            ]
        }
    if name == "publish":  # invoked directly (IAM), not through a route
        return {"room_id": "cold", "message": f"cold start {seq}", "user_id": "bench"}
    if name in ("connect", "disconnect", "default"):
        return gateway_event(name, connection_id=f"COLD{seq:011d}=", body="not json", secret=secret)
    route = routes().get(name, name)
    body = {"action": route, "room_id": "cold", "message": "hi", "to_user_id": "bob", "user_id": "bob"}
    return gateway_event(route, body=body, connection_id=connection_id("cold", 0), secret=secret)


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
            rows = asyncio.run(
                _environments(LambdaRuntime, envs, secret, rounds, warm, failed, api.endpoint_url)
            )
    finally:
        embedded.stop()
    return {"rows": rows, "warm_invocations": warm, "failed": failed}


def _refused(payload: bytes) -> bool:
    try:
        answer = json.loads(payload)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("ok") is False


async def _environments(
    runtime_class: Any,
    envs: dict[str, dict[str, str]],
    secret: str,
    rounds: int,
    warm: int,
    failed: dict[str, str],
    endpoint: str = "http://127.0.0.1:9/dev",
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
                    events = [_event(name, secret, seq + i, endpoint) for i in range(1 + warm)]
                    seq += len(events)
                    spawned = time.perf_counter()
                    first = await pool.invoke(events[0])
                    cold_ms = (time.perf_counter() - spawned) * 1000
                    warm_ms = (
                        [(await pool.invoke(event)).duration_ms for event in events[1:]] if first.ok else []
                    )
                finally:
                    await pool.close()
                # one function's failure (say, an event it does not take) is a row, not the end; so is a
                # refusal (publish answers {"ok": false}): it would time the error path, not the function
                if not first.ok or _refused(first.payload):
                    failed[name] = f"{first.error_type or 'refused'}: {first.payload[:300]!r}"
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


IMPORT_COLUMNS: list[Column] = [
    ("what", "what"),
    ("import ms", "import_ms"),
    ("CPU ms", lambda r: r.get("import_cpu_ms")),
    ("in gc ms", lambda r: r.get("gc_ms")),
    ("process ms", "process_ms"),
    ("over boto3 ms", "over_boto3_ms"),
    ("x boto3", "vs_boto3"),
    ("botocore.docs", lambda r: "loaded" if r.get("botocore_docs") else "-"),
]
RUNTIME_COLUMNS: list[Column] = [
    ("function", "function"),
    ("init ms", "init_ms"),
    ("first invoke ms", "first_invoke_ms"),
    ("spawn->answer ms", "cold_total_ms"),
    ("warm invoke ms", "warm_invoke_ms"),
    ("first/warm", lambda r: r["first_invoke_ms"] / r["warm_invoke_ms"] if r["warm_invoke_ms"] else None),
]


def render(result: dict[str, Any]) -> str:
    imports = result["imports"]
    title = f"cold start: import in a fresh interpreter (median of {imports['rounds']}, interleaved)"
    parts = [records_table(title, IMPORT_COLUMNS, imports["rows"])]
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
        rounds = runtime["rows"][0]["rounds"] if runtime["rows"] else 0
        title = (
            f"cold start through awslambdaric (median of {rounds} environments; warm = median of "
            f"{runtime['warm_invocations']})"
        )
        parts.append(records_table(title, RUNTIME_COLUMNS, runtime["rows"]))
        parts += [
            f"{name}: its first invocation failed ({why})" for name, why in runtime.get("failed", {}).items()
        ]
    return "\n\n".join(parts)
