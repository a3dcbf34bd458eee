"""The local stack's fault switch: off (and invisible) unless ``LOCAL_STACK_FAULTS`` is set.

``LOCAL_STACK_FAULTS="connections=500,dynamodb=throttle"`` makes the ``@connections`` POST API and the
functions' DynamoDB client fail. Each entry is ``target=kind[:rate]``:

* ``connections`` kinds: ``429``, ``500``, ``503``, ``403``, ``413`` (answered with AWS's
  ``x-amzn-ErrorType``) or ``timeout`` (held ``LOCAL_STACK_FAULT_HOLD_S`` seconds, default 6 — past the
  sender's 5 s read timeout — then dropped unanswered);
* ``dynamodb`` kinds: ``throttle`` (400 ``ProvisionedThroughputExceededException``), ``500``
  (``InternalServerError``), ``503`` (``ServiceUnavailable``).

Without a rate, the *first attempt of every distinct request* fails and its retry passes (same connection
and body for a POST; same operation and body for DynamoDB): deterministic, and every request exercises
its retry path. With a rate (``500:0.2``), each attempt fails with that probability
(``LOCAL_STACK_FAULT_SEED`` fixes the draws).

``run_stack`` parses the stack process's own environment once and hands the gateway its switch; for the
functions, :func:`worker_env` adds ``fault_site/`` to their ``PYTHONPATH``, whose ``sitecustomize`` calls
:func:`install_dynamodb_faults` in every worker before the handler module is imported (boto3's default
session hands the hook to every client made from it).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV = "LOCAL_STACK_FAULTS"
SITE = Path(__file__).resolve().parent / "fault_site"

CONNECTION_ERRORS = {
    403: "ForbiddenException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
    500: "InternalServerError",
    503: "ServiceUnavailableException",
}
DYNAMODB_ERRORS = {
    "throttle": (400, "ProvisionedThroughputExceededException"),
    "500": (500, "InternalServerError"),
    "503": (503, "ServiceUnavailable"),
}


@dataclass
class Switch:
    """One target's faults: which kind, and either a rate or once per distinct request."""

    kind: str
    rate: float | None
    rng: random.Random
    seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fires(self, *key: bytes | str) -> bool:
        with self._lock:
            if self.rate is not None:
                hit = self.rng.random() < self.rate
            else:
                digest = hashlib.sha256(b"\0".join(k.encode() if isinstance(k, str) else k for k in key))
                hit = digest.hexdigest() not in self.seen
                self.seen.add(digest.hexdigest())
            return hit


def parse(spec: str | None, seed: str | None = None) -> dict[str, Switch]:
    """``{"connections": Switch, "dynamodb": Switch}`` from ``LOCAL_STACK_FAULTS`` (empty when unset)."""
    switches: dict[str, Switch] = {}
    for entry in (spec or "").split(","):
        if not entry.strip():
            continue
        target, _, value = entry.strip().partition("=")
        kind, _, rate = value.partition(":")
        valid = {"connections": {*map(str, CONNECTION_ERRORS), "timeout"}, "dynamodb": set(DYNAMODB_ERRORS)}
        if target not in valid or kind not in valid[target]:
            raise ValueError(f"{ENV}: unknown fault {entry!r}; see local_stack/faults.py")
        rng = random.Random(f"{seed}:{target}" if seed else None)  # noqa: S311 - test faults, not crypto
        switches[target] = Switch(kind=kind, rate=float(rate) if rate else None, rng=rng)
    return switches


def from_env(env: Mapping[str, str] = os.environ) -> dict[str, Switch]:
    return parse(env.get(ENV), env.get("LOCAL_STACK_FAULT_SEED"))


def hold_seconds(env: Mapping[str, str] = os.environ) -> float:
    return float(env.get("LOCAL_STACK_FAULT_HOLD_S") or 6.0)


def worker_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What a worker needs for the DynamoDB faults (nothing when the switch is off)."""
    if not env.get(ENV):
        return {}
    names = (ENV, "LOCAL_STACK_FAULT_SEED")
    return {n: env[n] for n in names if env.get(n)} | {"LOCAL_STACK_FAULT_SITE": str(SITE)}


def install_dynamodb_faults(env: Mapping[str, str] = os.environ) -> Switch | None:
    """Register a ``before-send`` hook on boto3's default session (so on every DynamoDB client)."""
    switch = from_env(env).get("dynamodb")
    if switch is None:
        return None
    import boto3
    from botocore.awsrequest import AWSResponse

    class _Body:
        def __init__(self, data: bytes) -> None:
            self._data = data

        def stream(self, **kwargs: Any) -> Any:
            yield self._data

    def before_send(request: Any, **kwargs: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        operation = target.decode() if isinstance(target, bytes) else str(target)
        if not switch.fires(operation, request.body or b""):
            return None
        status, code = DYNAMODB_ERRORS[switch.kind]
        payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"})
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "local-fault"}
        return AWSResponse(request.url, status, headers, _Body(payload.encode()))

    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register_first("before-send.dynamodb", before_send)
    return switch
