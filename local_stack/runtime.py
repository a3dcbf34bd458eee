"""A local Lambda: a Runtime API server per execution environment and a pool of awslambdaric workers.

Each function gets a :class:`FunctionPool`. A worker is one process running the function's image
command, ``python -m awslambdaric app.handler``, with its folder as ``LAMBDA_TASK_ROOT``/cwd, the
function folder and the repository root (the shared layer) on ``PYTHONPATH``, and the function's
Terraform environment. Like a Lambda execution environment, a worker runs one invocation at a time;
a pool grows on demand (a "cold start") up to ``max_workers``, so concurrent invocations run
concurrently.

A worker is in one :class:`WorkerState` (starting -> idle <-> busy -> draining -> dead, any live state
-> dead when its process dies); ``_Worker.move`` is the only way it changes state and refuses a move
:data:`TRANSITIONS` does not list. Dispatch, spawn, timeout, recycle and exit decide by the state alone.

Every worker gets its own Runtime API port (``AWS_LAMBDA_RUNTIME_API``), so the server knows which
process asks for the next event and can kill exactly that one when its invocation times out. All ports
are sites of one aiohttp application. Each pool also serves the Runtime Interface Emulator's endpoint
``POST /2015-03-31/functions/function/invocations`` on a port of its own (:attr:`FunctionPool.invoke_url`).

Errors are reported like Lambda: handler errors as the runtime posts them (``errorType``,
``errorMessage``, ``stackTrace``); init errors (a handler that fails to import) fail the waiting
invocations with the runtime's init error (``Runtime.ImportModuleError`` ...); a deadline overrun kills
the worker and answers ``Sandbox.Timedout``; a worker that dies mid-invocation gives ``Runtime.ExitError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import functools
import itertools
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["FunctionPool", "IllegalTransition", "InvokeResult", "LambdaRuntime", "LogSink", "WorkerState"]

LogSink = Callable[[str, str], None]
"""Called with (function name, one log line)."""

RUNTIME_PREFIX = "/2018-06-01/runtime"
RIE_PATH = "/2015-03-31/functions/function/invocations"
ACCOUNT = "000000000000"
INIT_BUDGET_S = 30.0  # how long an invocation may wait for a worker to start, on top of its timeout


@dataclass
class InvokeResult:
    """The outcome of one invocation: ``payload`` is the response, or the error document when
    ``error_type`` is set (as Lambda's Invoke API with ``X-Amz-Function-Error``)."""

    payload: bytes
    error_type: str | None = None
    request_id: str = ""
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


def _error(error_type: str, message: str, request_id: str) -> InvokeResult:
    body = {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": []}
    return InvokeResult(json.dumps(body).encode(), error_type, request_id)


@dataclass(eq=False)
class _Invocation:
    request_id: str
    payload: bytes
    future: asyncio.Future[InvokeResult]
    started: float = 0.0
    timer: asyncio.TimerHandle | None = None


class WorkerState(enum.Enum):
    """Where an execution environment is in its life; the pool's decisions read only this."""

    STARTING = "starting"  # its port or process is being opened, or it is initialising the handler
    IDLE = "idle"  # asked for an event (or will ask again): the next invocation is handed to it
    BUSY = "busy"  # an invocation is handed to it or running in it
    DRAINING = "draining"  # takes no more work: killed now, or (recycled) once its invocation ends
    DEAD = "dead"  # its process exited and its port is closed


TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STARTING: frozenset({WorkerState.IDLE, WorkerState.DRAINING, WorkerState.DEAD}),
    WorkerState.IDLE: frozenset({WorkerState.BUSY, WorkerState.DRAINING, WorkerState.DEAD}),
    WorkerState.BUSY: frozenset({WorkerState.IDLE, WorkerState.DRAINING, WorkerState.DEAD}),
    WorkerState.DRAINING: frozenset({WorkerState.DEAD}),
    WorkerState.DEAD: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A worker was asked to move between states its lifecycle does not connect (a runtime bug)."""


@dataclass(eq=False)
class _Worker:
    wid: int
    state: WorkerState = WorkerState.STARTING
    port: int = 0  # its Runtime API port, once open
    site: web.BaseSite | None = None
    process: asyncio.subprocess.Process | None = None
    waiter: asyncio.Future[_Invocation | None] | None = None  # set while IDLE; resolved by dispatch
    current: _Invocation | None = None  # the invocation handed to it (BUSY, or DRAINING after recycle)

    def move(self, to: WorkerState) -> None:
        """The one way a worker changes state: an illegal transition raises."""
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"worker {self.wid}: no transition {self.state.value} -> {to.value}")
        self.state = to


def _listening_socket(host: str) -> socket.socket:
    """A listening socket on a free port of ``host``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the worker gets SIGKILL if the stack dies without cleaning up (kill -9)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class FunctionPool:
    """The execution environments of one function."""

    def __init__(
        self,
        runtime: LambdaRuntime,
        name: str,
        *,
        task_root: Path,
        env: Mapping[str, str],
        timeout_s: float,
        max_workers: int,
        min_workers: int,
        handler: str = "app.handler",
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.task_root = task_root
        self.env = dict(env)
        self.timeout_s = timeout_s
        self.max_workers = max(1, max_workers)
        self.min_workers = max(0, min(min_workers, self.max_workers))
        self.handler = handler
        region = self.env.get("AWS_REGION", "us-east-1")
        self.function_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"  # sent with every event
        # Every worker from the moment its start is decided (STARTING) until its process is gone (DEAD).
        self.workers: list[_Worker] = []
        self.pending: deque[_Invocation] = deque()
        self.last_init_error: dict[str, Any] | None = None
        self.invoke_url = ""
        self.cold_starts = 0
        self._ids = itertools.count(1)
        self._spawns: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- public -------------------------------------------------------------------------------------
    async def invoke(self, payload: bytes | str | Mapping[str, Any]) -> InvokeResult:
        """Run one invocation and return its outcome (never raises for function errors)."""
        if isinstance(payload, Mapping):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        loop = asyncio.get_running_loop()
        inv = _Invocation(str(uuid.uuid4()), payload, loop.create_future())
        self._dispatch(inv)
        try:
            return await asyncio.wait_for(asyncio.shield(inv.future), self.timeout_s + INIT_BUDGET_S)
        except TimeoutError:
            with contextlib.suppress(ValueError):
                self.pending.remove(inv)
            result = _error(
                "Runtime.Unavailable",
                f"RequestId: {inv.request_id} Error: no execution environment became ready in time",
                inv.request_id,
            )
            self._finish(inv, result)
            return result

    async def warm(self) -> None:
        """Start ``min_workers`` environments (pre-warmed, like provisioned concurrency)."""
        live, _ = self._live_and_starting()
        await asyncio.gather(*(self._launch() for _ in range(self.min_workers - live)))

    async def recycle(self) -> None:
        """Code changed: idle and starting workers stop now, busy ones after their invocation; new
        ones start."""
        for w in list(self.workers):
            if w.state is WorkerState.BUSY:
                self._drain(w)
            else:
                self._kill(w)
        await self.warm()

    async def close(self) -> None:
        """Fail what waits, kill every worker and return once every worker process is gone."""
        self._closing = True
        for inv in list(self.pending):
            self._finish(inv, _error("Runtime.Unavailable", "the local stack is stopping", inv.request_id))
        self.pending.clear()
        workers = list(self.workers)
        for w in workers:
            self._kill(w)
        # A spawn under way kills its process as soon as it has one (its worker is DRAINING).
        await asyncio.gather(*self._spawns, return_exceptions=True)
        for w in workers:
            if w.process is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w.process.wait(), 5)

    # -- decisions -----------------------------------------------------------------------------------
    def _dispatch(self, inv: _Invocation) -> None:
        for w in self.workers:
            if w.state is WorkerState.IDLE:
                self._assign(w, inv)
                return
        self.pending.append(inv)
        self._maybe_spawn()

    def _live_and_starting(self) -> tuple[int, int]:
        """(environments that are or will be able to take work, those of them still starting)."""
        live = [w for w in self.workers if w.state in _LIVE]
        return len(live), sum(1 for w in live if w.state is WorkerState.STARTING)

    def _maybe_spawn(self) -> bool:
        """The one "start a worker?" rule: more invocations queued than environments starting, and room
        under ``max_workers``. The new worker counts as STARTING at once, before its task runs."""
        if self._closing:
            return False
        live, starting = self._live_and_starting()
        if len(self.pending) <= starting or live >= self.max_workers:
            return False
        self._launch()
        return True

    def _launch(self) -> asyncio.Task[None]:
        w = _Worker(wid=next(self._ids))
        self.workers.append(w)
        task = asyncio.get_running_loop().create_task(self._spawn(w))
        self._spawns.add(task)
        task.add_done_callback(self._spawns.discard)
        return task

    def _idle(self, w: _Worker) -> None:
        """The worker can take an event: the oldest queued one, or the next dispatched."""
        w.move(WorkerState.IDLE)
        w.waiter = asyncio.get_running_loop().create_future()
        if self.pending:
            self._assign(w, self.pending.popleft())

    def _assign(self, w: _Worker, inv: _Invocation) -> None:
        w.move(WorkerState.BUSY)
        w.current = inv
        assert w.waiter is not None
        w.waiter.set_result(inv)

    def _start(self, w: _Worker, inv: _Invocation) -> None:
        """The worker received ``inv``: its deadline starts now."""
        inv.started = time.monotonic()
        loop = asyncio.get_running_loop()
        inv.timer = loop.call_later(self.timeout_s, self._timed_out, w, inv)
        self.runtime.log(self.name, f"START RequestId: {inv.request_id} Version: $LATEST")

    def _finish(self, inv: _Invocation, result: InvokeResult) -> None:
        if inv.timer is not None:
            inv.timer.cancel()
        if inv.future.done():
            return
        result.request_id = inv.request_id
        if inv.started:
            result.duration_ms = (time.monotonic() - inv.started) * 1000
            self.runtime.log(self.name, f"END RequestId: {inv.request_id}")
            self.runtime.log(
                self.name,
                f"REPORT RequestId: {inv.request_id}\tDuration: "
                f"{result.duration_ms:.2f} ms" + ("" if result.ok else f"\tError: {result.error_type}"),
            )
        inv.future.set_result(result)

    def _timed_out(self, w: _Worker, inv: _Invocation) -> None:
        if inv.future.done():
            return
        self._finish(
            inv,
            _error(
                "Sandbox.Timedout",
                f"RequestId: {inv.request_id} Error: Task timed out after {self.timeout_s:.2f} seconds",
                inv.request_id,
            ),
        )
        self.runtime.log(self.name, f"{inv.request_id} Task timed out after {self.timeout_s:.2f} seconds")
        w.current = None
        self._kill(w)

    # -- Runtime API (called by LambdaRuntime's handlers) ----------------------------------------------
    async def next_invocation(self, w: _Worker) -> _Invocation | None:
        if w.state is WorkerState.STARTING:
            self._idle(w)  # init done
        waiter = w.waiter
        if waiter is None:  # draining or dead: this environment takes no more work
            self._kill(w)
            return None
        inv = await waiter
        w.waiter = None
        if inv is None:
            return None
        self._start(w, inv)
        return inv

    def post_response(self, w: _Worker, request_id: str, body: bytes, error_type: str | None) -> bool:
        inv = w.current
        if inv is None or inv.request_id != request_id:
            return False
        w.current = None
        self._finish(inv, InvokeResult(body, error_type))
        if w.state is WorkerState.DRAINING:
            self._kill(w)  # recycled while it ran this invocation
        else:
            self._idle(w)
        return True

    def post_init_error(self, w: _Worker, body: bytes, error_type: str | None) -> None:
        self._drain(w)  # it exits now: later invocations need a new environment
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {
                "errorMessage": body.decode(errors="replace"),
                "errorType": error_type or "Runtime.Unknown",
            }
        self.last_init_error = doc
        err_type = doc.get("errorType") or error_type or "Runtime.Unknown"
        self.runtime.log(
            self.name,
            f"INIT ERROR {err_type}: {doc.get('errorMessage', '')} "
            f"(the handler {self.handler} in {self.task_root} failed to initialize)",
        )
        waiting, self.pending = list(self.pending), deque()
        for inv in waiting:
            payload = dict(doc, requestId=inv.request_id)
            self._finish(inv, InvokeResult(json.dumps(payload).encode(), err_type))

    # -- processes ---------------------------------------------------------------------------------------
    async def _spawn(self, w: _Worker) -> None:
        """Open the STARTING worker's port and start its process (unless it was killed meanwhile)."""
        try:
            sock = _listening_socket(self.runtime.host)
            w.port = sock.getsockname()[1]
            w.site = web.SockSite(self.runtime.runner, sock)
            await w.site.start()
        except OSError:
            await self._on_exit(w)
            raise
        if w.state is not WorkerState.STARTING:
            await self._on_exit(w)
            return
        self.runtime.register_worker(w.port, self, w)
        self.cold_starts += 1
        env = dict(self.env)
        env["AWS_LAMBDA_RUNTIME_API"] = f"{self.runtime.host}:{w.port}"
        env["AWS_LAMBDA_LOG_STREAM_NAME"] = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        try:
            w.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "awslambdaric",
                self.handler,
                cwd=str(self.task_root),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                limit=1024 * 1024,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as exc:
            doc = {
                "errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": f"cannot start awslambdaric {self.handler} in {self.task_root}: {exc}",
            }
            self.post_init_error(w, json.dumps(doc).encode(), None)
            await self._on_exit(w)
            return
        asyncio.get_running_loop().create_task(self._pump(w))
        if w.state is WorkerState.DRAINING:
            self._kill(w)  # killed (pool closing, code changed) while its process was being started

    async def _pump(self, w: _Worker) -> None:
        assert w.process is not None and w.process.stdout is not None
        stream = w.process.stdout
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                break
            # awslambdaric joins the lines of one record with \r and indents with U+00A0 (CloudWatch style)
            text = line.decode(errors="replace").rstrip("\r\n").replace("\xa0", " ")
            for part in text.split("\r"):
                self.runtime.log(self.name, part)
        code = await w.process.wait()
        if w.state is WorkerState.STARTING and code != -signal.SIGKILL:
            self.runtime.log(self.name, f"worker exited with status {code} before asking for an event")
        await self._on_exit(w)

    def _drain(self, w: _Worker) -> None:
        """No more work for ``w``; it keeps an invocation already handed to it."""
        if w.state is not WorkerState.DRAINING:
            w.move(WorkerState.DRAINING)
        if w.waiter is not None and not w.waiter.done():
            w.waiter.set_result(None)
        w.waiter = None

    def _kill(self, w: _Worker) -> None:
        if w.state is WorkerState.DEAD:
            return
        self._drain(w)
        proc = w.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def _on_exit(self, w: _Worker) -> None:
        if w.state is WorkerState.DEAD:
            return
        died_starting = w.state is WorkerState.STARTING  # without reporting why (crash, sys.exit at import)
        w.move(WorkerState.DEAD)
        if w.waiter is not None and not w.waiter.done():
            w.waiter.set_result(None)
        w.waiter = None
        inv, w.current = w.current, None
        code = w.process.returncode if w.process else None
        if inv is not None and not inv.future.done():
            self._finish(
                inv,
                _error(
                    "Runtime.ExitError",
                    f"RequestId: {inv.request_id} Error: Runtime exited with error: exit status {code}",
                    inv.request_id,
                ),
            )
        with contextlib.suppress(ValueError):
            self.workers.remove(w)
        self.runtime.unregister_worker(w.port)
        if w.site is not None:
            with contextlib.suppress(Exception):
                await w.site.stop()
        if died_starting:
            waiting, self.pending = list(self.pending), deque()  # what waited for it fails
            for queued in waiting:
                self._finish(
                    queued,
                    _error(
                        "Runtime.ExitError",
                        f"RequestId: {queued.request_id} Error: Runtime "
                        f"exited during init with error: exit status {code}",
                        queued.request_id,
                    ),
                )
        elif self.pending and not self._closing:
            # invocations still queued (their worker was recycled or killed) need another environment
            while self._maybe_spawn():
                pass


_LIVE = frozenset({WorkerState.STARTING, WorkerState.IDLE, WorkerState.BUSY})


class LambdaRuntime:
    """One aiohttp application serving the Runtime API of every worker and the RIE endpoint of every pool."""

    def __init__(self, *, host: str = "127.0.0.1", log: LogSink | None = None) -> None:
        self.host = host
        self.pools: dict[str, FunctionPool] = {}
        self._by_port: dict[int, tuple[FunctionPool, _Worker | None]] = {}
        self._log = log or (lambda name, line: print(f"[{name}] {line}", flush=True))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get(f"{RUNTIME_PREFIX}/invocation/next", self._next)
        app.router.add_post(
            f"{RUNTIME_PREFIX}/invocation/{{rid}}/response", functools.partial(self._post, error=False)
        )
        app.router.add_post(
            f"{RUNTIME_PREFIX}/invocation/{{rid}}/error", functools.partial(self._post, error=True)
        )
        app.router.add_post(f"{RUNTIME_PREFIX}/init/error", self._init_error)
        app.router.add_post(RIE_PATH, self._rie_invoke)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)

    def log(self, name: str, line: str) -> None:
        self._log(name, line)

    async def start(self) -> None:
        await self.runner.setup()

    async def add_function(
        self,
        name: str,
        *,
        task_root: Path,
        env: Mapping[str, str],
        timeout_s: float,
        max_workers: int = 4,
        min_workers: int = 0,
    ) -> FunctionPool:
        pool = FunctionPool(
            self,
            name,
            task_root=task_root,
            env=env,
            timeout_s=timeout_s,
            max_workers=max_workers,
            min_workers=min_workers,
        )
        sock = _listening_socket(self.host)
        port = sock.getsockname()[1]
        await web.SockSite(self.runner, sock).start()
        self._by_port[port] = (pool, None)
        pool.invoke_url = f"http://{self.host}:{port}{RIE_PATH}"
        self.pools[name] = pool
        return pool

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools.values()), return_exceptions=True)
        await self.runner.cleanup()

    def register_worker(self, port: int, pool: FunctionPool, w: _Worker) -> None:
        self._by_port[port] = (pool, w)

    def unregister_worker(self, port: int) -> None:
        self._by_port.pop(port, None)

    def _lookup(self, request: web.Request) -> tuple[FunctionPool, _Worker | None]:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        entry = self._by_port.get(sockname[1]) if sockname else None
        if entry is None:
            raise web.HTTPNotFound(text='{"errorMessage":"unknown runtime endpoint"}')
        return entry

    def _worker(self, request: web.Request) -> tuple[FunctionPool, _Worker]:
        pool, w = self._lookup(request)
        if w is None:
            raise web.HTTPNotFound()
        return pool, w

    async def _next(self, request: web.Request) -> web.StreamResponse:
        pool, w = self._worker(request)
        inv = await pool.next_invocation(w)
        if inv is None:
            return web.Response(status=410, text='{"errorMessage":"execution environment is shutting down"}')
        deadline_ms = int((time.time() + pool.timeout_s) * 1000)
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": pool.function_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
            f"Parent={uuid.uuid4().hex[:16]};Sampled=0",
        }
        return web.Response(body=inv.payload, headers=headers)

    async def _post(self, request: web.Request, *, error: bool) -> web.Response:
        """``POST /invocation/{id}/response`` (``error=False``) or ``.../error``: an invocation's outcome."""
        pool, w = self._worker(request)
        body = await request.read()
        error_type: str | None = None
        if error:
            error_type = request.headers.get("Lambda-Runtime-Function-Error-Type", "Unhandled")
            with contextlib.suppress(ValueError, AttributeError):
                error_type = json.loads(body).get("errorType") or error_type
        if not pool.post_response(w, request.match_info["rid"], body, error_type):
            return web.json_response(
                {"errorMessage": "unknown request id", "errorType": "InvalidRequestID"}, status=400
            )
        return web.json_response({"status": "OK"}, status=202)

    async def _init_error(self, request: web.Request) -> web.Response:
        pool, w = self._worker(request)
        body = await request.read()
        pool.post_init_error(w, body, request.headers.get("Lambda-Runtime-Function-Error-Type"))
        return web.json_response({"status": "OK"}, status=202)

    async def _rie_invoke(self, request: web.Request) -> web.Response:
        pool, _ = self._lookup(request)
        result = await pool.invoke(await request.read())
        headers = {"Content-Type": "application/json"}
        if not result.ok:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return web.Response(body=result.payload, headers=headers)
