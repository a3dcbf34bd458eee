"""Small tools of the reliability families: hand-made JWTs, local HTTP endpoints that misbehave on purpose,
and reading the connections table."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
from botocore.awsrequest import AWSResponse


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


def retamper(token: str, **claims: Any) -> str:
    """The token with its payload changed and its original signature kept."""
    header, payload, signature = token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    body = json.loads(base64.urlsafe_b64decode(padded))
    body.update(claims)
    return f"{header}.{segment(body)}.{signature}"


def secret_parts(token: str) -> list[str]:
    """The whole token and each long segment of it: none may appear in any log line."""
    parts = [token] + [part for part in token.split(".") if len(part) >= 16]
    return [part for part in parts if part]


def leaks(lines: list[str], tokens: list[str]) -> int:
    """How many (line, token part) pairs show a token or one of its segments."""
    parts = [part for token in tokens if token for part in secret_parts(token)]
    # The JOSE header of an ordinary HS256/RS256 token is public knowledge, and shared by every token.
    parts = [p for p in parts if not _is_common_header(p)]
    return sum(1 for line in lines for part in parts if part in line)


def _is_common_header(part: str) -> bool:
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
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
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/.well-known/jwks.json"


# --- fault injection -------------------------------------------------------------------------------------


class _RawBody(io.BytesIO):
    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


DYNAMODB_ERRORS = {
    "throttle": (400, "ProvisionedThroughputExceededException"),
    "500": (500, "InternalServerError"),
    "unavailable": (503, "ServiceUnavailable"),
}


class DynamoFaults:
    """botocore ``before-send`` fault injection on one DynamoDB client: per operation, a queue of faults, one
    per HTTP attempt (botocore's retries included). A fault is one of ``DYNAMODB_ERRORS`` (answered without
    the request reaching the table), ``"write-then-500"`` (the request is applied, then answered 500: the
    response is lost) or None (passes through).

    botocore calls *every* ``before-send`` handler and uses the first response; moto's stub is one of them
    and would still apply the request. So a refused request has its URL pointed at an unmatched host first,
    which moto ignores (a new request is built for every attempt)."""

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
        url = request.url
        if fault == "write-then-500":
            status, code = DYNAMODB_ERRORS["500"]
        else:
            status, code = DYNAMODB_ERRORS[fault]
            request.url = self.UNMATCHED_URL
        payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"})
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected"}
        return AWSResponse(url, status, headers, _RawBody(payload.encode()))


# --- a stack's processes ---------------------------------------------------------------------------------


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
