"""The test kit: everything tests and benchmarks need to run the local stack, and nothing else does it.

* :func:`start_stack` / :func:`test_config`: a stack in a thread of this process (``StackThread``);
* :class:`StackProcess`: ``python -m local_stack up`` as a child, ready on its ready line;
* :func:`make_token` (and ``SECRET``, the stack's default secret): the one token maker;
* :class:`FakeManagementApi` / :class:`FakeManagementApiProcess`: the one fake ``@connections`` API;
* :class:`MotoProcess`: moto's server in a child of its own (a ``DYNAMODB_ENDPOINT`` out of process);
* :func:`load_function` / :class:`FakeContext`: a function's module as its image loads it, and a Lambda
  context, for calling its ``handler`` directly;
* ``local_stack.testing.ws`` (``ChatClient``: needs ``websockets``) and ``local_stack.testing.raw_ws``
  (bare-socket WebSocket frames) for clients; ``local_stack.testing.jwks`` for identity providers.

README.md, "How to run the stack from your own tests", has a worked example.
"""

from __future__ import annotations

from typing import Any

from ..config import DEFAULT_JWT_SECRET
from ..tokens import make_token as _sign
from .context import FakeContext, load_function
from .management_api import FakeManagementApi, FakeManagementApiProcess
from .moto import MotoProcess
from .process import StartError, parse_ready_line, read_ready_line, stop_process
from .stack import TEST_DEFAULTS, StackProcess, start_stack, test_config

__all__ = [
    "SECRET",
    "TEST_DEFAULTS",
    "FakeContext",
    "FakeManagementApi",
    "FakeManagementApiProcess",
    "MotoProcess",
    "StackProcess",
    "StartError",
    "load_function",
    "make_token",
    "parse_ready_line",
    "read_ready_line",
    "start_stack",
    "stop_process",
    "test_config",
]

SECRET = DEFAULT_JWT_SECRET


def make_token(
    sub: Any = "alice",
    *,
    secret: str = SECRET,
    expires_in: int = 3600,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """A token for ``sub`` signed with ``secret`` (the stack's default), valid ``expires_in`` s (negative:
    expired); ``name``, ``room`` and any other claim as keywords (``sub=None``: no ``sub``)."""
    name = claims.pop("name", None)
    room = claims.pop("room", None)
    return _sign(secret, sub, name=name, room=room, ttl_s=expires_in, algorithm=algorithm, **claims)[0]
