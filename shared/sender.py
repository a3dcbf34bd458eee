"""Posting frames through the API Gateway management API, one connection or a whole room at once.

Outcomes per connection:
- delivered: ``PostToConnection`` returned 200;
- gone: 410 ``GoneException`` — the connection is closed; ``on_gone`` removes exactly that record
  (gone_kept when that delete fails: the record then waits for the next broadcast or its TTL);
- failed: anything else after retries. 429 ``LimitExceededException``, 5xx and network errors are retried
  with exponential backoff and full jitter; 403 and 413 are not (retrying cannot help). A failed
  connection is never deleted: it may be alive;
- deferred: not posted (or not retried) because the broadcast's ``may_start`` said no more attempts may
  start (the fanout function, near its invocation's deadline): the caller delivers it again later.

Every retry is logged (a warning with the attempt and the error) and counted: ``PostRetries`` counts
every retried post, ``PostReadTimeoutRetries`` those of them that followed a read timeout. Those are the
retries that can deliver a frame twice (the first request may have reached the socket; only its answer
was late), so they are watched apart. ``broadcast`` and ``post`` emit both counts from the calling thread
and ``BroadcastResult`` carries them.

Backpressure: a broadcast holds at most ``pool_size`` posts in flight on one shared client whose
connection pool has the same size, so every worker thread gets a kept-alive connection. Each post spends
one request of the account's API Gateway throttle (10,000 RPS shared with every API).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from shared.management_api import ManagementApiClient
from shared.observability import count, logger

RETRYABLE_CODES = frozenset(
    {"LimitExceededException", "ThrottlingException", "TooManyRequestsException", "InternalServerError"}
)


class Outcome(Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    GONE_KEPT = "gone_kept"
    FAILED = "failed"
    DEFERRED = "deferred"


@dataclass(frozen=True, kw_only=True)
class BroadcastResult:
    recipients: int
    delivered: int
    gone: int
    gone_kept: int
    failed: int
    deferred: int = 0  # not attempted: ``may_start`` said no (near the deadline)
    retries: int = 0  # retried posts, whatever the error
    read_timeout_retries: int = 0  # of which after a read timeout (a possible duplicate)


@dataclass(frozen=True)
class _Report:
    """One post's outcome and the retries it took."""

    outcome: Outcome
    retries: int = 0
    read_timeout_retries: int = 0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Our own retry loop instead of botocore's: its standard mode sleeps up to 1 s, then 2 s — too long
    for a chat message — and cannot be told which codes must never be retried."""

    max_attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))  # noqa: S311


def management_client(endpoint_url: str, *, pool_size: int) -> ManagementApiClient:
    """The production client: SigV4 + libcurl (pycurl) instead of boto3, for CPU (fan-out is GIL-bound, so
    CPU per post is the broadcast's speed; libcurl posts with the GIL released). Measured against boto3 and
    the urllib3 client it replaced in bench/README.md, "What the figures say". Same request on the wire,
    same exceptions (shared/management_api.py). Pool of ``pool_size`` handles, one kept-alive connection
    each; connect timeout 2 s, 7 s per attempt in all (connect + read timeout 5 s), no retries of its own
    (RetryPolicy retries)."""
    return ManagementApiClient(endpoint_url, pool_size=pool_size, connect_timeout=2, read_timeout=5)


def classify(error: Exception) -> tuple[Outcome, bool]:
    """(outcome if final, whether to retry) for an error raised by ``post_to_connection``."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        # boto3 raises the typed GoneException only when the response names it; a bare 410 is a ClientError.
        if code == "GoneException" or status == 410:
            return Outcome.GONE, False
        retry = code in RETRYABLE_CODES or status == 429 or status >= 500
        return Outcome.FAILED, retry
    if isinstance(error, BotoCoreError):  # connection refused/reset, timeouts
        return Outcome.FAILED, True
    raise error


class Sender:
    """Posts frames with bounded concurrency. One instance per execution environment."""

    def __init__(
        self,
        *,
        pool_size: int,
        on_gone: Callable[[str], object],
        client_factory: Callable[[str], Any] | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pool_size = pool_size
        self._on_gone = on_gone
        self._client_factory = client_factory or (lambda url: management_client(url, pool_size=pool_size))
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._retry = retry
        self._sleep = sleep
        self._executor: ThreadPoolExecutor | None = None

    def client(self, endpoint_url: str) -> Any:
        with self._clients_lock:
            if endpoint_url not in self._clients:
                self._clients[endpoint_url] = self._client_factory(endpoint_url)
            return self._clients[endpoint_url]

    def post(
        self,
        endpoint_url: str,
        connection_id: str,
        data: bytes,
        *,
        on_gone: Callable[[str], object] | None = None,
    ) -> Outcome:
        report = self._post(endpoint_url, connection_id, data, on_gone)
        _count_retries(report.retries, report.read_timeout_retries)
        return report.outcome

    def _post(
        self,
        endpoint_url: str,
        connection_id: str,
        data: bytes,
        on_gone: Callable[[str], object] | None,
        may_start: Callable[[], bool] | None = None,
    ) -> _Report:
        client = self.client(endpoint_url)
        attempt = 1
        retries = read_timeout_retries = 0
        while True:
            if may_start is not None and not may_start():
                return _Report(Outcome.DEFERRED, retries, read_timeout_retries)
            try:
                client.post_to_connection(ConnectionId=connection_id, Data=data)
                return _Report(Outcome.DELIVERED, retries, read_timeout_retries)
            except (ClientError, BotoCoreError) as error:
                outcome, retry = classify(error)
                reason = str(error)
                read_timeout = isinstance(error, ReadTimeoutError)
            if outcome is Outcome.GONE:
                outcome = Outcome.GONE if self._forget(connection_id, on_gone) else Outcome.GONE_KEPT
                return _Report(outcome, retries, read_timeout_retries)
            if not retry or attempt >= self._retry.max_attempts:
                logger.warning(
                    "post_to_connection failed",
                    extra={"connection_id": connection_id, "attempts": attempt, "error": reason},
                )
                return _Report(outcome, retries, read_timeout_retries)
            logger.warning(
                "post_to_connection retried",
                extra={
                    "connection_id": connection_id,
                    "attempt": attempt,
                    "error": reason,
                    "read_timeout": read_timeout,
                },
            )
            retries += 1
            read_timeout_retries += read_timeout
            self._sleep(self._retry.delay(attempt))
            attempt += 1

    def broadcast(
        self,
        endpoint_url: str,
        connection_ids: Iterable[str],
        data: bytes,
        *,
        on_gone: Callable[[str], object] | None = None,
        may_start: Callable[[], bool] | None = None,
    ) -> BroadcastResult:
        """Post ``data`` to every id; ``on_gone`` (default: the sender's) is told each one found gone.
        ``may_start``, asked before every attempt, stops the broadcast from starting more (deferred)."""
        ids = list(connection_ids)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.pool_size, thread_name_prefix="fanout")
        reports = list(
            self._executor.map(
                lambda cid: self._post_safely(endpoint_url, cid, data, on_gone, may_start), ids
            )
        )
        outcomes = [r.outcome for r in reports]
        retries = sum(r.retries for r in reports)
        read_timeout_retries = sum(r.read_timeout_retries for r in reports)
        _count_retries(retries, read_timeout_retries)
        return BroadcastResult(
            recipients=len(ids),
            delivered=outcomes.count(Outcome.DELIVERED),
            gone=outcomes.count(Outcome.GONE),
            gone_kept=outcomes.count(Outcome.GONE_KEPT),
            failed=outcomes.count(Outcome.FAILED),
            deferred=outcomes.count(Outcome.DEFERRED),
            retries=retries,
            read_timeout_retries=read_timeout_retries,
        )

    def _post_safely(
        self,
        endpoint_url: str,
        connection_id: str,
        data: bytes,
        on_gone: Callable[[str], object] | None,
        may_start: Callable[[], bool] | None,
    ) -> _Report:
        try:
            return self._post(endpoint_url, connection_id, data, on_gone, may_start)
        except Exception:  # one recipient's surprise must not cost the others their message
            logger.exception("unexpected error posting", extra={"connection_id": connection_id})
            return _Report(Outcome.FAILED)

    def _forget(self, connection_id: str, on_gone: Callable[[str], object] | None) -> bool:
        try:
            (on_gone or self._on_gone)(connection_id)
        except Exception:  # the record expires by TTL anyway; the next broadcast tries again
            logger.exception("could not delete gone connection", extra={"connection_id": connection_id})
            return False
        return True


def _count_retries(retries: int, read_timeout_retries: int) -> None:
    """Metrics are emitted from the calling thread only: Powertools' metric set is not thread-safe."""
    count("PostRetries", retries)
    count("PostReadTimeoutRetries", read_timeout_retries)


def endpoint_url(configured: str | None, *, domain_name: str, stage: str) -> str:
    """The management API base URL: ``WEBSOCKET_CALLBACK_URL`` when set, else this API's own."""
    return configured or f"https://{domain_name}/{stage}"
