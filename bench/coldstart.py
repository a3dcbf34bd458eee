"""Section 3: cold start of each function.

1. Import time in a fresh interpreter (the function's own environment and PYTHONPATH, as its image):
   ``import app`` next to ``import boto3`` alone and ``boto3`` + one client, measured in the same rounds,
   interleaved; plus the whole process (interpreter start to exit) for ``pass``.
2. Through ``awslambdaric`` against bench/runtime_api.py: init (spawn to the first ``/next``), the first
   invocation, and warm invocations of the same process. DynamoDB is moto's server; the management API is
   bench/fake_api.py without latency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.env import LAMBDAS, MESSAGES_TABLE, ROOT, TABLE, functions
from bench.proc import stop_process
from bench.report import median, table

PROBES = {
    "python (pass)": "pass",
    "import boto3": "import boto3",
    "boto3 + dynamodb client": "import boto3; boto3.client('dynamodb')",
}
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
    """Packages by the self time of their modules' imports (``-X importtime``, one run), in ms."""
    done = _python(["-X", "importtime", "-c", "import app"], env, cwd)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if not own.isdigit():
            continue
        package = name.split(".")[0]
        totals[package] = totals.get(package, 0.0) + int(own) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:limit]


def _events(name: str, secret: str, seq: int) -> dict[str, Any]:
    from local_stack.testing import make_token
    from tests.support.events import connect_event, disconnect_event, message_event

    cid = f"COLD{seq:011d}="
    if name == "connect":
        return connect_event(
            {"token": make_token("alice", secret=secret), "room_id": "cold"}, connection_id=cid
        )
    if name == "disconnect":
        return disconnect_event(connection_id=cid)
    if name == "send_message":
        return message_event({"action": "sendMessage", "message": "hi"}, connection_id="SENDER000000000=")
    if name == "default":
        return message_event("not json", connection_id=cid, route="$default")
    if name == "get_history":
        return message_event({"action": "getHistory"}, connection_id="SENDER000000000=", route="getHistory")
    return message_event({"action": name}, connection_id=cid, route=name)


def runtime_times(names: list[str], rounds: int, warm: int) -> dict[str, Any]:
    from bench.fake_api import FakeApiProcess
    from bench.runtime_api import RuntimeApi
    from local_stack.config import StackConfig
    from local_stack.dynamodb import EmbeddedDynamoDB, dynamodb_client
    from tests.support.tables import create_connections_table, create_messages_table

    secret = StackConfig().jwt_secret
    rows = []
    embedded = EmbeddedDynamoDB()
    endpoint = embedded.start()
    try:
        client = dynamodb_client(endpoint, "us-east-1")
        create_connections_table(client, TABLE)
        create_messages_table(client, MESSAGES_TABLE)
        from bench.seed import seed_room

        seed_room(client, "cold", 10)
        client.put_item(
            TableName=TABLE,
            Item={
                "connection_id": {"S": "SENDER000000000="},
                "room_id": {"S": "cold"},
                "user_id": {"S": "alice"},
                "ttl": {"N": str(int(time.time()) + 7200)},
            },
        )
        with FakeApiProcess(latency=0.0, stage="dev") as api:
            seq = 0
            for name in names:
                env = function_env(name, callback_url=api.endpoint_url, dynamodb_endpoint=endpoint)
                samples: list[dict[str, float]] = []
                for _ in range(rounds):

                    def event(name: str = name) -> dict[str, Any]:
                        nonlocal seq
                        seq += 1
                        return _events(name, secret, seq)

                    samples.append(_one_environment(name, env, event, warm, RuntimeApi))
                rows.append(
                    {
                        "function": name,
                        "rounds": rounds,
                        **{k: median([s[k] for s in samples]) for k in samples[0]},
                    }
                )
    finally:
        embedded.stop()
    return {"rows": rows, "warm_invocations": warm}


def _one_environment(
    name: str, env: dict[str, str], event: Callable[[], dict[str, Any]], warm: int, api_class: Any
) -> dict[str, float]:
    api = api_class(function_name=name).start()
    env = {**env, "AWS_LAMBDA_RUNTIME_API": api.address}
    first = api.submit(event())
    # stderr to a file, not a pipe: nothing reads it while the function runs, and a full pipe would block it.
    with tempfile.TemporaryFile() as stderr:
        spawned = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "app.handler"],
            env=env,
            cwd=LAMBDAS / name,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            try:
                api.wait(first, timeout_s=60)
            except Exception as error:  # e.g. the runtime died importing the handler: say why
                why = f"{name} did not answer its first invocation: {error}"
                raise RuntimeError(f"{why}\n{_tail(stderr)}") from error
            if first.error is not None:
                raise RuntimeError(f"{name} failed its first invocation: {first.error}\n{_tail(stderr)}")
            warm_ms = []
            for _ in range(warm):
                invocation = api.invoke(event(), timeout_s=30)
                warm_ms.append((invocation.answered_at - invocation.delivered_at) * 1000)
            assert api.first_next_at is not None
            return {
                "init_ms": (api.first_next_at - spawned) * 1000,
                "first_invoke_ms": (first.answered_at - first.delivered_at) * 1000,
                "cold_total_ms": (first.answered_at - spawned) * 1000,
                "warm_invoke_ms": median(warm_ms),
            }
        finally:
            stop_process(proc)
            api.stop()


def _tail(file: Any, limit: int = 2000) -> str:
    """The last ``limit`` characters written to ``file`` (the function's stderr)."""
    file.flush()
    file.seek(0)
    return file.read().decode("utf-8", "replace")[-limit:]


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
                f"  {fn}: " + ", ".join(f"{mod} {ms:.0f}" for mod, ms in top) for fn, top in tops.items()
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
    return "\n\n".join(parts)
