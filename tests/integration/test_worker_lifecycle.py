"""The worker lifecycle through a running stack: what the pool's state-driven decisions guarantee."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from typing import Any

import pytest

from local_stack import StackThread

from .helpers import test_config

pytestmark = pytest.mark.timeout(60)

EVENT = {"body": json.dumps({"seconds": 0})}


def test_close_while_a_worker_process_is_being_started_leaves_no_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With flags, a worker killed before its process existed was forgotten: the process started
    # after close() had returned and was never killed.
    real_exec = asyncio.create_subprocess_exec
    started: list[asyncio.subprocess.Process] = []

    async def slow_exec(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await real_exec(*args, **kwargs)
        started.append(proc)
        await asyncio.sleep(0.3)  # the pool closes while the process is being started
        return proc

    thread = StackThread(test_config(max_workers=1, web_port=None, only_functions=("slow",)))
    with thread as stack:
        pool = stack.pools["slow"]
        monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_exec)

        async def close_during_spawn() -> tuple[list[int], Any]:
            invocation = asyncio.ensure_future(pool.invoke(EVENT))
            for _ in range(200):
                if started:
                    break
                await asyncio.sleep(0.01)
            await pool.close()
            alive = [p.pid for p in started if p.returncode is None]
            return alive, await invocation

        try:
            alive, result = thread.run(close_during_spawn())
        finally:
            for proc in started:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
    assert len(started) == 1
    assert alive == [], "a worker process outlived close()"
    assert result.error_type == "Runtime.Unavailable"


def test_a_worker_that_answered_takes_the_next_invocation_without_a_cold_start() -> None:
    # With flags, an invocation arriving between a worker's response and its next /next request
    # found no idle worker and started another environment.
    thread = StackThread(test_config(max_workers=3, web_port=None, only_functions=("slow",)))
    with thread as stack:
        pool = stack.pools["slow"]

        async def one_after_another() -> list[Any]:
            return [await pool.invoke(EVENT) for _ in range(20)]

        results = thread.run(one_after_another())
        assert all(r.ok for r in results)
        assert pool.cold_starts == 1
        assert len({json.loads(r.json()["body"])["pid"] for r in results}) == 1
