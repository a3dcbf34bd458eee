"""pytest plugin: record what each function does to AWS and reads from its environment while tests run.

Enable with ``-p tests.iac.aws_calls`` and ``AWS_CALLS_OUTPUT=<file.json>``. Every botocore API call,
every post of the management-API client that bypasses botocore's API layer (shared/management_api.py,
recorded as ``apigatewaymanagementapi:PostToConnection``) and every ``os.environ`` read made by project
code (``shared/`` or ``lambdas/``) is attributed to the function whose ``lambdas/<name>/app.py`` frame is
on the stack (or, in a worker thread, was on the stack when the work was submitted), and written at the
end of the session as::

    {"calls": {"send_message": [{"service": "dynamodb", "operation": "Query", "params": {...}}, ...]},
     "env": {"send_message": ["DYNAMO_TABLE_NAME_CHAT_CONNECTIONS", ...]}}
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any
from unittest import mock

import pytest

OUTPUT_ENV = "AWS_CALLS_OUTPUT"
ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"
CODE_DIRS = (str(ROOT / "shared") + os.sep, str(LAMBDAS) + os.sep)
RECORDED_PARAMS = ("TableName", "IndexName", "SecretId", "ConnectionId", "QueueUrl")

_calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
_env_reads: dict[str, set[str]] = defaultdict(set)
_local = threading.local()
_patches: list[Any] = []


def _function_on_stack(frame: FrameType | None) -> str | None:
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.name == "app.py" and path.parent.parent == LAMBDAS:
            return path.parent.name
        frame = frame.f_back
    return getattr(_local, "function", None)


def _patch(owner: Any, name: str, replacement: Any) -> None:
    _patches.append(mock.patch.object(owner, name, replacement))
    _patches[-1].start()


def _record(frame: FrameType | None, service: str, operation: str, api_params: dict[str, Any]) -> None:
    function = _function_on_stack(frame)
    if function is not None:
        params = {k: str(api_params[k]) for k in RECORDED_PARAMS if k in api_params}
        if "TransactItems" in api_params:  # IAM authorises each item as its own action on its table
            params["TransactItems"] = ",".join(
                f"{kind}:{body['TableName']}"
                for item in api_params["TransactItems"]
                for kind, body in item.items()
            )
        _calls[function].append({"service": service, "operation": operation, "params": params})


def install() -> None:
    import botocore.client

    from shared.management_api import ManagementApiClient

    make_api_call = botocore.client.BaseClient._make_api_call

    def recording_make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        _record(sys._getframe(1), self.meta.service_model.service_name, operation_name, api_params)
        return make_api_call(self, operation_name, api_params)

    # The production management-API client signs and sends itself (no _make_api_call): record its posts
    # as the boto3 operation they replace, which IAM authorises as execute-api:ManageConnections.
    post_to_connection = ManagementApiClient.post_to_connection

    def recording_post_to_connection(self: Any, **api_params: Any) -> Any:
        _record(sys._getframe(1), "apigatewaymanagementapi", "PostToConnection", api_params)
        return post_to_connection(self, **api_params)

    submit = concurrent.futures.ThreadPoolExecutor.submit

    def attributing_submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        function = _function_on_stack(sys._getframe(1))

        def run(*a: Any, **kw: Any) -> Any:
            previous = getattr(_local, "function", None)
            _local.function = function
            try:
                return fn(*a, **kw)
            finally:
                _local.function = previous

        return submit(self, run, *args, **kwargs)

    environ_type = type(os.environ)
    getitem = environ_type.__getitem__
    contains = environ_type.__contains__

    def note(key: Any) -> None:
        # Only reads made by project code count; boto3's and Powertools' own reads are theirs.
        caller: FrameType | None = sys._getframe(2)
        while caller is not None and caller.f_code.co_filename.endswith(
            ("os.py", "_collections_abc.py", "<frozen os>", "<frozen _collections_abc>")
        ):
            caller = caller.f_back
        in_code = caller is not None and caller.f_code.co_filename.startswith(CODE_DIRS)
        if in_code and (function := _function_on_stack(caller)) is not None:
            _env_reads[function].add(str(key))

    def recording_getitem(self: Any, key: Any) -> Any:
        note(key)
        return getitem(self, key)

    def recording_contains(self: Any, key: Any) -> bool:
        note(key)
        return contains(self, key)

    _patch(botocore.client.BaseClient, "_make_api_call", recording_make_api_call)
    _patch(ManagementApiClient, "post_to_connection", recording_post_to_connection)
    _patch(concurrent.futures.ThreadPoolExecutor, "submit", attributing_submit)
    _patch(environ_type, "__getitem__", recording_getitem)
    _patch(environ_type, "__contains__", recording_contains)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(OUTPUT_ENV):
        install()


def pytest_unconfigure(config: pytest.Config) -> None:
    output = os.environ.get(OUTPUT_ENV)
    while _patches:
        _patches.pop().stop()
    if output:
        record = {
            "calls": {name: calls for name, calls in sorted(_calls.items())},
            "env": {name: sorted(names) for name, names in sorted(_env_reads.items())},
        }
        Path(output).write_text(json.dumps(record, indent=2, sort_keys=True))
