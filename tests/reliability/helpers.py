"""Small tools of the reliability families: hand-made JWTs, endpoints that misbehave, DynamoDB faults, a
stack's processes and what its clients received."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import math
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psutil
from botocore.awsrequest import AWSResponse

from local_stack.testing.ws import ChatClient

T = TypeVar("T")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hs_sign(header: dict[str, Any], payload: dict[str, Any], key: bytes, digest: Any = hashlib.sha256) -> str:
    """A token signed by hand with HMAC (PyJWT refuses to HMAC with a PEM key, an attacker does not)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    return f"{segment(header)}.{segment(payload)}.{signature}"


def _decoded(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def retamper(token: str, **claims: Any) -> str:
    """The token with its payload changed and its original signature kept."""
    header, payload, signature = token.split(".")
    return f"{header}.{segment({**_decoded(payload), **claims})}.{signature}"


def leaks(lines: list[str], tokens: list[str]) -> int:
    """How many (line, token part) pairs show a token or one of its segments of 16 characters or more."""
    parts = [part for t in tokens if t for part in [t, *t.split(".")] if part == t or len(part) >= 16]
    # The JOSE header of an ordinary HS256/RS256 token is public knowledge, and shared by every token.
    parts = [p for p in parts if not _is_common_header(p)]
    return sum(1 for line in lines for part in parts if part in line)


def _is_common_header(part: str) -> bool:
    try:
        value = _decoded(part)
    except ValueError:
        return False
    return isinstance(value, dict) and set(value) <= {"alg", "typ", "kid"}


@contextmanager
def blackhole() -> Iterator[str]:
    """A URL whose port accepts TCP connections (into the backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/.well-known/jwks.json"
    finally:
        sock.close()


def closed_port_url() -> str:
    """A URL on a port nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/.well-known/jwks.json"


class _RawBody(io.BytesIO):
    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.read()


DYNAMODB_ERRORS = {
    "throttle": (400, "ProvisionedThroughputExceededException"),
    "500": (500, "InternalServerError"),
    "unavailable": (503, "ServiceUnavailable"),
    "write-then-500": (500, "InternalServerError"),
}


class DynamoFaults:
    """botocore ``before-send`` faults on one DynamoDB client: per operation, one fault per HTTP attempt
    (retries included): a ``DYNAMODB_ERRORS`` key (the table never sees it), ``"write-then-500"`` (applied,
    then answered 500) or None (passes). botocore calls *every* ``before-send`` handler, moto's stub
    included, so a refused request's URL is pointed at a host moto ignores (each attempt is a new request)."""

    UNMATCHED_URL = "https://fault-injected.invalid/"

    def __init__(self, client: Any) -> None:
        self.client = client
        self.queues: dict[str, list[str | None]] = {}
        self.attempts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        # register_first: ahead of moto's stub (a built-in handler), so its response is the one used.
        client.meta.events.register_first("before-send.dynamodb", self._before_send)

    def script(self, operation: str, *faults: str | None) -> DynamoFaults:
        self.queues.setdefault(operation, []).extend(faults)
        return self

    def always(self, operation: str, fault: str, attempts: int = 50) -> DynamoFaults:
        return self.script(operation, *([fault] * attempts))

    def remove(self) -> None:
        self.client.meta.events.unregister("before-send.dynamodb", self._before_send)

    def _before_send(self, request: Any, **kwargs: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        self.attempts[operation] += 1
        queue = self.queues.get(operation)
        fault = queue.pop(0) if queue else None
        if fault is None:
            return None
        self.injected[operation] += 1
        url, (status, code) = request.url, DYNAMODB_ERRORS[fault]
        if fault != "write-then-500":
            request.url = self.UNMATCHED_URL
        payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"})
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected"}
        return AWSResponse(url, status, headers, _RawBody(payload.encode()))


def memory(pid: int) -> tuple[int, int, int]:
    """(RSS of the stack process ``pid``, summed RSS of its worker processes, number of workers), bytes."""
    gateway = psutil.Process(pid)
    workers = count = 0
    for child in gateway.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            workers += child.memory_info().rss
            count += 1
    return gateway.memory_info().rss, workers, count


def worker_environments(pid: int) -> list[dict[str, str]]:
    return [child.environ() for child in psutil.Process(pid).children(recursive=True)]


async def settle(progress: Callable[[], int], total: int, deadline: float, stall: float = math.inf) -> None:
    """Wait until ``progress()`` reaches ``total``, ``deadline`` (monotonic) passes, or it stays still for
    ``stall`` seconds (what is missing by then is lost)."""
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        got = progress()
        if got >= total:
            return
        if got != last:
            last, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > stall:
            return
        await asyncio.sleep(0.25)


def expected_for(sent: dict[int, list[str]], room_size: int) -> dict[int, Counter[str]]:
    """Client ``i`` is in room ``i // room_size``: every message of its room, once (its own included)."""
    return {
        i: Counter(text for j, texts in sent.items() if j // room_size == i // room_size for text in texts)
        for i in sent
    }


def delivered(clients: list[ChatClient], expected: dict[int, Counter[str]]) -> int:
    return sum(min(c.received[t], n) for i, c in enumerate(clients) for t, n in expected[i].items())


def losses(clients: list[ChatClient], expected: dict[int, Counter[str]]) -> tuple[int, int, int]:
    """(lost, duplicated, foreign): foreign = frames from another room."""
    lost = duplicated = foreign = 0
    for i, client in enumerate(clients):
        for text, n in expected[i].items():
            lost += max(0, n - client.received[text])
            duplicated += max(0, client.received[text] - n)
        foreign += sum(n for text, n in client.received.items() if text not in expected[i])
    return lost, duplicated, foreign


async def gathered(awaitables: Iterable[Awaitable[T]], at_once: int) -> list[T]:
    """Await them all (client opens, say) with at most ``at_once`` in flight; their results in order."""
    gate = asyncio.Semaphore(at_once)

    async def one(awaitable: Awaitable[T]) -> T:
        async with gate:
            return await awaitable

    return list(await asyncio.gather(*(one(a) for a in awaitables)))
