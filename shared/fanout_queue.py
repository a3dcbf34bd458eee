"""The fanout queue (SQS): where a large room's broadcast leaves its shard jobs, and where the fanout
function brings a failed one back sooner (docs/fanout.md).

The client is botocore's, made from the process's one session (``shared.runtime``), deadline-guarded like
the DynamoDB client; its endpoint is botocore's standard ``AWS_ENDPOINT_URL_SQS`` when set (the local
stack points it at its SQS). Errors cross this module's line as :class:`EnqueueFailed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared import deadline, runtime
from shared.observability import logger

MAX_BATCH_ENTRIES = 10  # SendMessageBatch's most
MAX_BATCH_BYTES = 256 * 1024  # SendMessageBatch's most, all entries together


class EnqueueFailed(Exception):
    """Shard jobs could not all be put on the queue; ``enqueued`` of them were."""

    def __init__(self, message: str, *, enqueued: int, total: int) -> None:
        super().__init__(message)
        self.enqueued = enqueued
        self.total = total


def sqs_client(*, pool_size: int = 10, connect_timeout: float = 2, read_timeout: float = 3) -> Any:
    """An SQS client with the DynamoDB client's retry and timeout policy (3 attempts, standard mode)."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=pool_size,
        tcp_keepalive=True,
    )
    return deadline.guard(runtime.botocore_session().create_client("sqs", config=config))


class FanoutQueue:
    """Sends shard job bodies in batches (several batch calls at once), and retries the entries a batch
    call reports failed (``Failed`` with ``SenderFault`` false) up to ``attempts`` times."""

    def __init__(
        self,
        queue_url: str,
        *,
        client: Any,
        concurrency: int = 4,
        attempts: int = 3,
        backoff: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.queue_url = queue_url
        self._client = client
        self._concurrency = concurrency
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._executor: ThreadPoolExecutor | None = None

    def enqueue(self, bodies: Iterable[str]) -> int:
        """Put every body on the queue; the count sent. Raises :class:`EnqueueFailed` when one could not be
        (the others may have been: a shard job repeated later is harmless, clients drop repeats)."""
        batches = list(_batches(bodies))
        total = sum(len(b) for b in batches)
        if not batches:
            return 0
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="enqueue")
        results = list(self._executor.map(self._send_safely, batches))
        sent = sum(n for n, _ in results)
        errors = [error for _, error in results if error is not None]
        if errors:
            raise EnqueueFailed(
                f"{total - sent} of {total} shard jobs could not be queued: {errors[0]}",
                enqueued=sent,
                total=total,
            )
        return sent

    def _send_safely(self, bodies: list[str]) -> tuple[int, str | None]:
        """(sent, None) or (sent, why the rest was not): ``sent`` counts what earlier attempts queued even
        when a later one raised."""
        pending = {str(i): body for i, body in enumerate(bodies)}
        sent = 0
        failed: list[dict[str, Any]] = []
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._client.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": key, "MessageBody": body} for key, body in pending.items()],
                )
            except (ClientError, BotoCoreError, deadline.DeadlineExceeded) as error:
                logger.warning(
                    "could not queue shard jobs", extra={"jobs": len(pending), "error": str(error)}
                )
                return sent, _describe(error)
            for ok in response.get("Successful", []):
                if pending.pop(ok["Id"], None) is not None:
                    sent += 1
            failed = response.get("Failed", [])
            fatal = [f for f in failed if f.get("SenderFault")]
            if fatal:  # a body SQS refuses (too large, bad characters): sending it again cannot help
                return sent, f"{fatal[0].get('Code')}: {fatal[0].get('Message')}"
            if not pending:
                return sent, None
            if attempt < self._attempts:
                logger.warning("shard jobs retried", extra={"jobs": len(pending), "attempt": attempt})
                self._sleep(self._backoff * 2 ** (attempt - 1))
        code = failed[0].get("Code") if failed else "no answer"
        return sent, f"{len(pending)} left after {self._attempts} attempts ({code})"

    def retry_later(self, receipt_handle: str, seconds: int) -> bool:
        """Make a received job visible again in ``seconds`` (sooner than the visibility timeout); False
        when SQS refused (the timeout then applies: the job still comes back)."""
        try:
            self._client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError, deadline.DeadlineExceeded) as error:
            logger.warning("could not shorten a shard's visibility", extra={"error": _describe(error)})
            return False
        return True


def _batches(bodies: Iterable[str]) -> Iterable[list[str]]:
    """Bodies grouped by at most 10 and 256 KiB (bodies are ASCII: a character is a byte)."""
    batch: list[str] = []
    size = 0
    for body in bodies:
        if batch and (len(batch) >= MAX_BATCH_ENTRIES or size + len(body) > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(body)
        size += len(body)
    if batch:
        yield batch


def _describe(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return f"{type(error).__name__}: {error}"
