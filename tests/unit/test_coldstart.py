"""Each function's init, imported as Lambda imports it (a fresh interpreter, the function's environment):
garbage collection paused while it loads then frozen, and one botocore session for all its AWS clients."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import boto3
import pytest

from bench.coldstart import function_env
from bench.env import LAMBDAS, functions
from shared import runtime

PROBE = """
import gc, json, sys
collections = []
def seen(phase, info):
    if phase == "start":  # (generation, after shared.runtime paused the collector?)
        collections.append((info["generation"], "shared.runtime" in sys.modules))
gc.callbacks.append(seen)
import app
during_init = list(collections)
clients = {}
store = getattr(app, "store", None)
if store is not None:
    clients["dynamodb"] = store._client
sender = getattr(app, "sender", None)
if sender is not None:
    clients["management"] = sender.client("http://127.0.0.1:9/dev")  # the environment's callback URL
def credentials(client):
    signer = getattr(client, "_request_signer", None)
    return id(signer._credentials if signer is not None else client._credentials)
print(json.dumps({
    "collections_during_init": during_init,
    "gc_enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "credentials": {name: credentials(c) for name, c in clients.items()},
}))
"""


def probe(name: str) -> dict[str, Any]:
    env = function_env(name, callback_url="http://127.0.0.1:9/dev", dynamodb_endpoint="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=LAMBDAS / name, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", functions())
def test_init_runs_without_garbage_collection_then_freezes(name: str) -> None:
    seen = probe(name)
    # Only the cheap young-generation passes of the imports before shared.runtime; none after it.
    assert [generation for generation, paused in seen["collections_during_init"] if paused] == []
    assert seen["gc_enabled"] is True
    assert seen["frozen"] > 10_000  # init's objects are out of the collector's reach


def test_dynamodb_and_management_clients_share_one_botocore_session() -> None:
    seen = probe("send_message")
    assert set(seen["credentials"]) == {"dynamodb", "management"}
    assert seen["credentials"]["dynamodb"] == seen["credentials"]["management"]


def test_botocore_session_is_boto3s_default_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setattr(runtime, "_own_session", None)
    session = runtime.botocore_session()
    assert boto3.DEFAULT_SESSION is not None and boto3.DEFAULT_SESSION._session is session
    assert runtime.botocore_session() is session
    assert boto3.client("dynamodb", region_name="us-east-1")._request_signer._credentials is (
        session.get_credentials()
    )
