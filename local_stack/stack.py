"""Wires the parts together: Terraform model -> DynamoDB -> Lambda runtime -> gateway -> web server.

Programmatic API (see README.md):

* ``async with run_stack(config) as stack:`` in an event loop;
* ``with StackThread(config) as stack:`` from synchronous code (tests): the stack runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from . import faults
from .config import StackConfig
from .dynamodb import (
    DUMMY_CREDENTIALS,
    EmbeddedDynamoDB,
    TtlReaper,
    dynamodb_client,
    ensure_table,
    local_table_names,
)
from .events import new_api_id
from .gateway import Gateway, GatewayLimits, Integration, LocalIntegration, RemoteIntegration, Route
from .queues import EventSourceMappings, LocalQueues
from .runtime import FunctionPool, LambdaRuntime, LogSink
from .terraform import (
    FunctionSpec,
    TerraformError,
    TerraformModel,
    evaluate_environment,
    event_source_mappings,
    load_model,
    queue_specs,
)
from .tokens import make_token
from .web import make_web_app

__all__ = [
    "PortInUseError",
    "Stack",
    "StackThread",
    "check_route_keys",
    "function_environment",
    "readable_log_line",
    "run_stack",
    "state_path",
]

T = TypeVar("T")
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


class PortInUseError(RuntimeError):
    """A port the stack must listen on is taken."""


def _bind(host: str, port: int, what: str, flag: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"{what} port {host}:{port} is already in use: stop what uses it, "
                f"or choose another with {flag}"
            ) from exc
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def check_route_keys(model: TerraformModel) -> None:
    """Two functions on one route: API Gateway has one integration per route, so Terraform's apply
    fails on the second; refuse it here too instead of silently routing to one of them."""
    owners: dict[str, list[str]] = {}
    for name, route_key in model.route_keys.items():
        owners.setdefault(route_key, []).append(name)
    clashes = [
        f"functions {', '.join(names[:-1])} and {names[-1]} have the same route_key {key!r}"
        for key, names in owners.items()
        if len(names) > 1
    ]
    if clashes:
        detail = " (a route has one integration: Terraform's apply would fail)"
        raise TerraformError("; ".join(clashes) + detail)


# Powertools' standard keys: shown as the line's time, level and message, or left out as noise.
_STANDARD_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "message",
        "service",
        "location",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "xray_trace_id",
        "sampling_rate",
    }
)


def readable_log_line(name: str, line: str) -> str | None:
    """One function log line as ``make dev`` prints it: a Powertools JSON record becomes one line
    (time, level, function, message, other keys as key=value), an embedded-metric record is dropped
    (``None``; CloudWatch turns those into metrics, not log reading), START/END are dropped (REPORT
    says the same), anything else is kept as it is."""
    if line.startswith(("START RequestId: ", "END RequestId: ")):
        return None
    if not line.startswith("{"):
        return f"[{name}] {line}"
    try:
        record = json.loads(line)
    except ValueError:
        return f"[{name}] {line}"
    if not isinstance(record, dict):
        return f"[{name}] {line}"
    if "_aws" in record:
        return None
    if "level" not in record or "message" not in record:
        return f"[{name}] {line}"
    stamp = str(record.get("timestamp", ""))
    clock = stamp[11:23].replace(",", ".") if len(stamp) >= 23 else stamp
    extra = " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in record.items()
        if key not in _STANDARD_KEYS
    )
    text = f"{clock} {record['level']:<7} [{name}] {record['message']}"
    return f"{text} {extra}" if extra else text


def state_path(state_dir: Path, ws_port: int) -> Path:
    """Where a running stack on ``ws_port`` describes itself (for ``python -m local_stack invoke``)."""
    return state_dir / f"stack-{ws_port}.json"


def function_environment(
    config: StackConfig,
    model: TerraformModel,
    spec: FunctionSpec,
    *,
    callback_url: str,
    dynamodb_endpoint: str,
    task_root: Path,
    unresolved: list[str] | None = None,
    fault_env: Mapping[str, str] | None = None,
    references: Mapping[str, str] | None = None,
    sqs_endpoint: str | None = None,
) -> dict[str, str]:
    """The function's Terraform environment with local values, plus Lambda's runtime variables
    (and ``fault_env``, :func:`faults.worker_env`'s variables, when the fault switch is on).
    ``references``: more local values (the queues' ``aws_sqs_queue.<name>.url``...)."""
    env, cannot = evaluate_environment(
        model,
        spec,
        tf_vars=config.tf_vars,
        known={
            "local.callback_url": callback_url,
            **{
                f"aws_dynamodb_table.{resource}.name": name
                for resource, name in local_table_names(config.table_name, model.tables).items()
            },
            **(references or {}),
        },
    )
    if unresolved is not None:
        unresolved.extend(cannot)
    if "JWT_SECRET_ARN" in env:
        env["JWT_SECRET_ARN"] = ""  # locally the secret is given directly
    verifies_tokens = any(name.startswith("JWT_") for name in spec.environment)
    if "JWT_JWKS_URL" in env:
        env["JWT_JWKS_URL"] = config.jwt_jwks_url
    if verifies_tokens:
        # The functions accept exactly one key source: the local secret unless a JWKS is configured.
        # Their algorithms follow it (HS256, or the function's own default for a JWKS, RS256) unless
        # JWT_ALGORITHMS is given: Terraform's default list is for the deployed secret.
        if not config.jwt_jwks_url:
            env["JWT_SECRET"] = config.jwt_secret
        env["JWT_ALGORITHMS"] = "" if config.jwt_jwks_url else "HS256"
    for name, value in config.function_settings.items():
        if name in spec.environment or (verifies_tokens and name.startswith("JWT_")):
            env[name] = value
    base = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    base.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_REGION": config.region,
            "AWS_DEFAULT_REGION": config.region,
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
            **({"AWS_ENDPOINT_URL_SQS": sqs_endpoint} if sqs_endpoint else {}),
            "_HANDLER": "app.handler",
            "LAMBDA_TASK_ROOT": str(task_root),
            "TZ": "UTC",
            "PYTHONPATH": os.pathsep.join([str(task_root), str(config.repo_root)]),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            **DUMMY_CREDENTIALS,
        }
    )
    base.update(env)
    if fault_env:
        extra = dict(fault_env)
        site = extra.pop("LOCAL_STACK_FAULT_SITE")
        base.update(extra, PYTHONPATH=os.pathsep.join([site, base["PYTHONPATH"]]))
    return base


def _stage_url(config: StackConfig, ws_port: int, scheme: str) -> str:
    """The stage's URL on the gateway port: ``ws`` for clients, ``http`` for ``@connections``."""
    return f"{scheme}://{config.host}:{ws_port}/{config.stage}"


@dataclass
class Stack:
    """A running local stack (what :func:`run_stack` yields)."""

    config: StackConfig
    model: TerraformModel
    ws_port: int
    web_port: int | None
    dynamodb_endpoint: str
    runtime: LambdaRuntime
    gateway: Gateway
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=20000))
    reaper: TtlReaper | None = None  # the connections table's
    reapers: dict[str, TtlReaper] = field(default_factory=dict)  # every table's, by Terraform resource name
    queues: LocalQueues | None = None  # every aws_sqs_queue (queues.urls by resource name)
    event_sources: EventSourceMappings | None = None  # a poller per event source mapping

    @property
    def table_names(self) -> dict[str, str]:
        """The local name of every Terraform table, by resource name (``connections``, ``messages``)."""
        return local_table_names(self.config.table_name, self.model.tables)

    @property
    def ws_url(self) -> str:
        return _stage_url(self.config, self.ws_port, "ws")

    @property
    def callback_url(self) -> str:
        """boto3 ``apigatewaymanagementapi`` endpoint_url."""
        return _stage_url(self.config, self.ws_port, "http")

    @property
    def web_url(self) -> str | None:
        return None if self.web_port is None else f"http://{self.config.host}:{self.web_port}/"

    @property
    def pools(self) -> dict[str, FunctionPool]:
        return self.runtime.pools

    def token(self, user: str, *, name: str | None = None, room: str | None = None, ttl_s: int = 3600) -> str:
        return make_token(self.config.jwt_secret, user, name=name, room=room, ttl_s=ttl_s)[0]

    def function_logs(self, function: str) -> list[str]:
        prefix = f"[{function}] "
        return [line[len(prefix) :] for line in list(self.logs) if line.startswith(prefix)]

    def connection_ids(self) -> list[str]:
        return list(self.gateway.connections)


async def _watch(stack: Stack, dirs: list[Path], log: Callable[[str, str], None]) -> None:
    """Poll the mtimes of the functions' and shared layer's sources; recycle workers on change."""

    def snapshot() -> dict[str, int]:
        result: dict[str, int] = {}
        for root in dirs:
            if not root.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
                for name in filenames:
                    if name.endswith((".py", ".json")):
                        path = os.path.join(dirpath, name)
                        with contextlib.suppress(OSError):
                            result[path] = os.stat(path).st_mtime_ns
        return result

    before = await asyncio.to_thread(snapshot)
    functions_dir = str(stack.config.functions_dir.resolve()) + os.sep
    while True:
        await asyncio.sleep(stack.config.reload_interval_s)
        after = await asyncio.to_thread(snapshot)
        if after == before:
            continue
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        before = after
        affected: set[str] = set()
        for path in changed:
            if path.startswith(functions_dir):
                affected.add(path[len(functions_dir) :].split(os.sep, 1)[0])
            else:
                affected = set(stack.pools)
                break
        pools = [p for name, p in stack.pools.items() if name in affected]
        if pools:
            names = ", ".join(sorted(p.name for p in pools))
            log("reload", f"{len(changed)} file(s) changed: recycling {names}")
            for pool in pools:
                await pool.recycle()


def _write_state(stack: Stack, path: Path) -> None:
    """What ``invoke`` needs to act on this stack (its functions' endpoints, table, gateway)."""
    state = {
        "pid": os.getpid(),
        "ws_url": stack.ws_url,
        "callback_url": stack.callback_url,
        "web_url": stack.web_url,
        "dynamodb_endpoint": stack.dynamodb_endpoint,
        "table_name": stack.config.table_name,
        "queues": stack.queues.urls if stack.queues else {},
        "region": stack.config.region,
        "stage": stack.config.stage,
        "functions": {
            name: {"route_key": stack.model.functions[name].route_key, "invoke_url": pool.invoke_url}
            for name, pool in stack.pools.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


@contextlib.contextmanager
def _listening(host: str, port: int, what: str, flag: str) -> Iterator[socket.socket]:
    sock = _bind(host, port, what, flag)
    with sock:
        yield sock


@asynccontextmanager
async def _dynamodb(config: StackConfig) -> AsyncIterator[str]:
    """The DynamoDB endpoint: the configured one, or moto's server in this process."""
    if config.dynamodb_endpoint:
        yield config.dynamodb_endpoint
        return
    embedded = EmbeddedDynamoDB(host=config.host)
    endpoint = await asyncio.to_thread(embedded.start)
    try:
        yield endpoint
    finally:
        await asyncio.to_thread(embedded.stop)


@asynccontextmanager
async def _lambda_runtime(config: StackConfig, log: LogSink) -> AsyncIterator[LambdaRuntime]:
    runtime = LambdaRuntime(host=config.host, log=log)
    await runtime.start()
    try:
        yield runtime
    finally:
        with contextlib.suppress(Exception):
            await runtime.close()  # every worker process, and every Runtime API and RIE port


async def _add_functions(
    config: StackConfig,
    model: TerraformModel,
    runtime: LambdaRuntime,
    *,
    callback_url: str,
    endpoint: str,
    queues: LocalQueues,
    log: LogSink,
) -> tuple[dict[str, Route], int | None]:
    """A pool (or a remote RIE endpoint) per function; the routes, and the client's message limit when a
    function's environment sets one."""
    fault_env = faults.worker_env()
    routes: dict[str, Route] = {}
    unresolved: list[str] = []
    max_message_bytes: int | None = None
    for name, spec in model.functions.items():
        if config.only_functions is not None and name not in config.only_functions:
            continue
        integration: Integration
        if name in config.function_urls:
            integration = RemoteIntegration(config.function_urls[name])
            log("gateway", f"route {spec.route_key} -> {config.function_urls[name]}")
        else:
            task_root = (config.functions_dir / name).resolve()
            if not (task_root / "app.py").is_file():
                log(name, f"WARNING: {task_root}/app.py does not exist: invocations will fail to import")
            env = function_environment(
                config,
                model,
                spec,
                callback_url=callback_url,
                dynamodb_endpoint=endpoint,
                task_root=task_root,
                unresolved=unresolved,
                fault_env=fault_env,
                references=queues.references,
                sqs_endpoint=queues.endpoint or None,
            )
            if env.get("MAX_MESSAGE_BYTES"):
                max_message_bytes = int(env["MAX_MESSAGE_BYTES"])
            pool = await runtime.add_function(
                name,
                task_root=task_root,
                env=env,
                timeout_s=spec.timeout,
                max_workers=config.max_workers,
                min_workers=config.min_workers,
            )
            integration = LocalIntegration(pool)
        if spec.route_key is not None:
            routes[spec.route_key] = Route(spec.route_key, name, integration, spec.route_response)
    for expr in sorted(set(unresolved)):
        log("terraform", f"cannot evaluate {expr} locally: passing ''")
    return routes, max_message_bytes


@asynccontextmanager
async def _served(app: web.Application, sock: socket.socket, **runner_options: Any) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **runner_options)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


@asynccontextmanager
async def _gateway(
    config: StackConfig,
    model: TerraformModel,
    routes: dict[str, Route],
    sock: socket.socket,
    log: LogSink,
    fault_switch: faults.Switch | None,
) -> AsyncIterator[Gateway]:
    ws_port = sock.getsockname()[1]
    gateway = Gateway(
        stage=config.stage,
        routes=routes,
        route_selection_expression=model.route_selection_expression,
        limits=GatewayLimits(
            frame_bytes=config.frame_bytes,
            message_bytes=config.message_bytes,
            idle_timeout_s=config.idle_timeout_s,
            max_duration_s=config.max_duration_s,
            integration_timeout_s=config.integration_timeout_s,
        ),
        api_id=new_api_id(),
        forwarded_port=ws_port,
        log=lambda line: log("gateway", line),
        fault_switch=fault_switch,
        credentials=(
            {DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"]: DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
            if config.verify_signatures
            else None
        ),
        region=config.region,
    )
    async with _served(gateway.app, sock, shutdown_timeout=2.0):
        try:
            yield gateway
        finally:
            with contextlib.suppress(Exception):
                await gateway.close()  # every connection closes, firing $disconnect (workers still up)


@contextlib.contextmanager
def _state_file(stack: Stack, path: Path) -> Iterator[Path]:
    _write_state(stack, path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@asynccontextmanager
async def _background(coro: Coroutine[Any, Any, Any]) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.get_running_loop().create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


@asynccontextmanager
async def run_stack(config: StackConfig) -> AsyncIterator[Stack]:
    """Start the whole local stack; stop everything (every child process) on exit.

    Each part is a context manager entered on ``parts`` in start order: a part's teardown sits beside
    its start, teardown runs in reverse order, and a part that fails to start tears down exactly the
    parts started before it. Adding a part is one ``enter_async_context`` line."""
    model = load_model(config.terraform_dirs)
    switches = faults.from_env()  # LOCAL_STACK_FAULTS of this process, parsed once (bad specs fail here)
    check_route_keys(model)
    # Read (and checked) before anything starts: a mapping AWS would refuse is a one-line error.
    queue_config, mapping_config = (
        queue_specs(model, config.tf_vars),
        event_source_mappings(model, config.tf_vars),
    )
    logs: deque[str] = deque(maxlen=20000)

    def log(name: str, line: str) -> None:
        text = f"[{name}] {line}"
        logs.append(text)
        if config.echo_logs:
            shown = text if config.log_format == "json" else readable_log_line(name, line)
            if shown is not None:
                print(shown, flush=True)

    async with contextlib.AsyncExitStack() as parts:
        # Both ports first: one taken is a one-line error before anything starts.
        ws_sock = parts.enter_context(
            _listening(config.host, config.ws_port, "WebSocket (WS_PORT)", "WS_PORT / --ws-port")
        )
        web_sock = None
        if config.web_port is not None:
            web_sock = parts.enter_context(
                _listening(config.host, config.web_port, "web client (WEB_PORT)", "WEB_PORT / --web-port")
            )
        ws_port = ws_sock.getsockname()[1]
        endpoint = await parts.enter_async_context(_dynamodb(config))
        client = dynamodb_client(endpoint, config.region)
        tables = local_table_names(config.table_name, model.tables)
        for resource, table_name in tables.items():
            created = await asyncio.to_thread(ensure_table, client, table_name, model.tables[resource])
            log("dynamodb", f"{'created' if created else 'using'} table {table_name} at {endpoint}")
        queues = await parts.enter_async_context(
            LocalQueues(
                queue_config,
                # with an external DynamoDB there is no moto server here: the queues get one of their own
                endpoint=None if config.dynamodb_endpoint else endpoint,
                region=config.region,
                ws_port=ws_port,
                host=config.host,
                log=lambda line: log("sqs", line),
            )
        )
        runtime = await parts.enter_async_context(_lambda_runtime(config, log))
        routes, max_message_bytes = await _add_functions(
            config,
            model,
            runtime,
            callback_url=_stage_url(config, ws_port, "http"),
            endpoint=endpoint,
            queues=queues,
            log=log,
        )
        gateway = await parts.enter_async_context(
            _gateway(config, model, routes, ws_sock, log, switches.get("connections"))
        )
        if web_sock is not None:
            web_app = make_web_app(
                web_dir=config.web_dir,
                ws_url=_stage_url(config, ws_port, "ws"),
                stage=config.stage,
                jwt_secret=config.jwt_secret,
                max_message_bytes=max_message_bytes,
            )
            await parts.enter_async_context(_served(web_app, web_sock))
        stack = Stack(
            config=config,
            model=model,
            ws_port=ws_port,
            web_port=web_sock.getsockname()[1] if web_sock else None,
            dynamodb_endpoint=endpoint,
            runtime=runtime,
            gateway=gateway,
            logs=logs,
            queues=queues,
        )
        for pool in runtime.pools.values():
            await pool.warm()  # stopped with the runtime
        # After the pools and the gateway: the pollers stop first, before a worker or the gateway does.
        stack.event_sources = await parts.enter_async_context(
            EventSourceMappings(
                mapping_config,
                queues=queues,
                pools=runtime.pools,
                log=lambda line: log("sqs", line),
            )
        )
        if config.state_dir is not None:
            parts.enter_context(_state_file(stack, state_path(config.state_dir, ws_port)))
        for resource, table_name in tables.items():
            table_spec = model.tables[resource]
            if not table_spec.ttl_attribute or config.ttl_reaper_interval_s <= 0:
                continue
            reaper = TtlReaper(
                client,
                table_name,
                table_spec,
                interval_s=config.ttl_reaper_interval_s,
                log=lambda line: log("dynamodb", line),
            )
            if resource == "connections":
                stack.reaper = reaper
            stack.reapers[resource] = reaper
            await parts.enter_async_context(_background(reaper.run()))
        if config.reload:
            watch_dirs = [config.functions_dir.resolve(), config.shared_dir.resolve()]
            await parts.enter_async_context(_background(_watch(stack, watch_dirs, log)))
        yield stack


class StackThread:
    """Run the stack in a background thread with its own event loop (for synchronous callers).

    ``with StackThread(config) as stack:`` returns once the stack is ready and stops it on exit.
    ``run(coro)`` runs a coroutine on the stack's loop and returns its result.
    """

    def __init__(self, config: StackConfig, *, start_timeout_s: float = 60.0) -> None:
        self.config = config
        self.start_timeout_s = start_timeout_s
        self.stack: Stack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="local-stack", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with run_stack(self.config) as stack:
                self.stack = stack
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> Stack:
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            raise TimeoutError("the local stack did not start in time")
        if self._error is not None or self.stack is None:
            raise RuntimeError(f"the local stack failed to start: {self._error!r}") from self._error
        return self.stack

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            print("local stack thread did not stop in time", file=sys.stderr)
