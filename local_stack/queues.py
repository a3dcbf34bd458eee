"""The local SQS: every Terraform ``aws_sqs_queue`` in moto's server, and one poller per
``aws_lambda_event_source_mapping`` invoking its function like Lambda's SQS event source mapping.

Queues live in the stack's embedded moto server (the DynamoDB one: moto's server answers every service).
With ``DYNAMODB_ENDPOINT`` set there is no embedded DynamoDB, so the queues get a moto server of their own:
they are the stack's internal plumbing (the functions enqueue, the stack's pollers dequeue), so they must be
where the pollers run. Each queue is created with its Terraform attributes (visibility timeout, retention,
receive wait, delay, maximum size, FIFO, the redrive policy to its dead-letter queue) under its Terraform
name plus the stack's port (``chat-fanout-3001``), so two stacks in one process never share a queue;
the queues are deleted when the stack stops.

A :class:`QueuePoller` does what the mapping does on AWS (the values are the Terraform's, read by
:func:`local_stack.terraform.event_source_mappings`):

* long-polls the queue, up to ``batch_size`` records per invocation (receives of 10 gathered for at most
  ``maximum_batching_window_in_seconds``);
* invokes the function through its :class:`~local_stack.runtime.FunctionPool` with the SQS event in
  Lambda's shape, at most ``scaling_config.maximum_concurrency`` invocations in flight (and never more
  than the pool's workers: a record is only received when an execution environment can take it);
* on success deletes every record, or, with ``function_response_types = ["ReportBatchItemFailures"]``,
  every record not listed in the response's ``batchItemFailures``; an invalid response (not JSON, an
  item identifier that is empty or not in the batch) fails the whole batch, as Lambda does;
* on a function error, a crash (``Runtime.ExitError``) or a timeout deletes nothing: the records come back
  after the queue's visibility timeout, and moto moves one received more than the redrive policy's
  ``maxReceiveCount`` times to the dead-letter queue on the next receive, as SQS does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

from .dynamodb import DUMMY_CREDENTIALS, EmbeddedDynamoDB
from .runtime import FunctionPool
from .terraform import EventSourceMappingSpec, QueueSpec

__all__ = [
    "LocalQueues",
    "PollerStats",
    "QueuePoller",
    "batch_failures",
    "local_queue_name",
    "sqs_client",
    "sqs_event_record",
]

RECEIVE_MAX = 10  # ReceiveMessage's MaxNumberOfMessages bound
RECEIVE_COUNTS_KEPT = 10_000  # PollerStats.receive_counts keeps the latest messages' only
LONG_POLL_S = 2  # idle long poll (Lambda's pollers use 20 s; shorter here so a stop is quick)
RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "DeadLetterQueueSourceArn",
)


def sqs_client(endpoint: str, region: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            retries={"max_attempts": 2},
            connect_timeout=5,
            read_timeout=LONG_POLL_S + 30,
            max_pool_connections=64,
        ),
    )


def local_queue_name(spec: QueueSpec, ws_port: int) -> str:
    """The Terraform name plus the stack's port (a FIFO queue keeps its ``.fifo`` suffix)."""
    stem = spec.name.removesuffix(".fifo")
    return f"{stem}-{ws_port}" + (".fifo" if spec.fifo else "")


def _attributes(spec: QueueSpec, dlq_arn: str | None) -> dict[str, str]:
    attributes = {
        "VisibilityTimeout": str(spec.visibility_timeout_s),
        "MessageRetentionPeriod": str(spec.message_retention_s),
        "ReceiveMessageWaitTimeSeconds": str(spec.receive_wait_time_s),
        "DelaySeconds": str(spec.delay_s),
        "MaximumMessageSize": str(spec.max_message_size),
    }
    if spec.fifo:
        attributes["FifoQueue"] = "true"
    if dlq_arn is not None:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count}
        )
    return attributes


class LocalQueues:
    """``async with LocalQueues(specs, ...) as queues:`` creates every queue (dead-letter queues first),
    deletes them on exit. ``endpoint`` is a moto server's; ``None`` starts one for the queues alone."""

    def __init__(
        self,
        specs: Mapping[str, QueueSpec],
        *,
        endpoint: str | None,
        region: str,
        ws_port: int,
        host: str = "127.0.0.1",
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.region = region
        self.ws_port = ws_port
        self.endpoint = endpoint or ""
        self._own_server = EmbeddedDynamoDB(host=host) if endpoint is None and specs else None
        self._log = log or (lambda line: None)
        self.urls: dict[str, str] = {}  # by resource name
        self.arns: dict[str, str] = {}
        self.client: Any = None

    @property
    def references(self) -> dict[str, str]:
        """``aws_sqs_queue.<name>.url|id|arn|name`` with local values (for the functions' environment)."""
        refs: dict[str, str] = {}
        for resource, url in self.urls.items():
            refs[f"aws_sqs_queue.{resource}.url"] = url
            refs[f"aws_sqs_queue.{resource}.id"] = url
            refs[f"aws_sqs_queue.{resource}.arn"] = self.arns[resource]
            refs[f"aws_sqs_queue.{resource}.name"] = url.rsplit("/", 1)[1]
        return refs

    def _create_all(self) -> None:
        if self._own_server is not None:
            self.endpoint = self._own_server.start()
        self.client = sqs_client(self.endpoint, self.region)
        pending = dict(self.specs)
        while pending:  # a dead-letter queue before the queue whose redrive policy names it
            ready = [
                s for s in pending.values() if s.dead_letter_queue is None or s.dead_letter_queue in self.urls
            ]
            if not ready:
                raise ValueError(f"aws_sqs_queue redrive policies form a cycle: {', '.join(pending)}")
            for spec in ready:
                dlq_arn = self.arns[spec.dead_letter_queue] if spec.dead_letter_queue else None
                name = local_queue_name(spec, self.ws_port)
                url = self.client.create_queue(QueueName=name, Attributes=_attributes(spec, dlq_arn))[
                    "QueueUrl"
                ]
                self.urls[spec.resource] = url
                self.arns[spec.resource] = self.client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["QueueArn"]
                )["Attributes"]["QueueArn"]
                extra = (
                    f", dead letters to {spec.dead_letter_queue} after {spec.max_receive_count}"
                    if dlq_arn
                    else ""
                )
                self._log(
                    f"created queue {name} (visibility {spec.visibility_timeout_s} s{extra}) "
                    f"at {self.endpoint}"
                )
                del pending[spec.resource]

    def _delete_all(self) -> None:
        for url in self.urls.values():
            with contextlib.suppress(Exception):
                self.client.delete_queue(QueueUrl=url)
        if self._own_server is not None:
            self._own_server.stop()

    async def __aenter__(self) -> LocalQueues:
        try:
            await asyncio.to_thread(self._create_all)
        except BaseException:
            await asyncio.to_thread(self._delete_all)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._delete_all)

    def depth(self, resource: str) -> int:
        """Messages in the queue, visible or in flight (``ApproximateNumberOfMessages[NotVisible]``)."""
        attrs = self.client.get_queue_attributes(
            QueueUrl=self.urls[resource],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def sqs_event_record(message: Mapping[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One ``Records`` entry as Lambda delivers an SQS message (attribute values are strings, message
    attributes in camelCase with binary values base64-encoded)."""
    system = message.get("Attributes") or {}
    attributes = {name: str(system[name]) for name in RECORD_ATTRIBUTES if name in system}
    message_attributes: dict[str, Any] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        entry: dict[str, Any] = {
            "stringListValues": list(value.get("StringListValues") or []),
            "binaryListValues": [base64.b64encode(v).decode() for v in value.get("BinaryListValues") or []],
            "dataType": value["DataType"],
        }
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        message_attributes[name] = entry
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def batch_failures(payload: bytes, message_ids: list[str]) -> set[str] | None:
    """The ids a ``ReportBatchItemFailures`` response lists as failed; ``None`` when the response is
    invalid, which fails the whole batch (Lambda's rules: no response, ``null``, ``{}`` or an empty or
    ``null`` list is a complete success; invalid JSON, an ``itemIdentifier`` that is missing, empty,
    ``null`` or not a message of the batch is a complete failure)."""
    try:
        response = json.loads(payload) if payload.strip() else None
    except ValueError:
        return None
    if response is None or response == {}:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    known = set(message_ids)
    failed: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or ident not in known:
            return None
        failed.add(ident)
    return failed


@dataclass
class PollerStats:
    """What a poller did (tests and benchmarks read it)."""

    invocations: int = 0
    received: int = 0  # records handed to the function, redeliveries included
    deleted: int = 0
    returned: int = 0  # records left for redelivery (failed items, failed batches)
    failed_batches: int = 0  # function errors, crashes, timeouts, invalid responses
    in_flight: int = 0
    max_in_flight: int = 0
    receive_counts: dict[str, int] = field(
        default_factory=dict
    )  # messageId -> highest receive count (latest)


class QueuePoller:
    """Lambda's SQS event source mapping for one queue and function: ``async with QueuePoller(...)``."""

    def __init__(
        self,
        mapping: EventSourceMappingSpec,
        *,
        pool: FunctionPool,
        client: Any,
        queue_url: str,
        queue_arn: str,
        region: str,
        log: Callable[[str], None] | None = None,
        long_poll_s: int = LONG_POLL_S,
    ) -> None:
        self.mapping = mapping
        self.pool = pool
        self.client = client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.long_poll_s = long_poll_s
        wanted = mapping.maximum_concurrency or pool.max_workers
        self.concurrency = max(1, min(wanted, pool.max_workers))
        self.stats = PollerStats()
        self._log = log or (lambda line: None)
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency + 1, thread_name_prefix="sqs-poller")
        self._slots = asyncio.Semaphore(self.concurrency)
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def __aenter__(self) -> QueuePoller:
        if not self.mapping.enabled:
            self._log(f"{self.mapping.resource}: enabled = false, not polling")
            return self
        limit = self.mapping.maximum_concurrency
        note = (
            ""
            if limit is None or limit <= self.pool.max_workers
            else f" (capped by --workers {self.pool.max_workers})"
        )
        self._log(
            f"{self.mapping.function} <- {self.queue_url.rsplit('/', 1)[1]}: "
            f"batch {self.mapping.batch_size}, "
            f"{self.concurrency} concurrent{note}, "
            f"{'ReportBatchItemFailures' if self.mapping.report_batch_item_failures else 'whole batches'}"
        )
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        tasks = [t for t in (self._task, *self._batches) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(**kwargs))

    async def _run(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            try:
                messages = await self._receive_batch()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:
                self._slots.release()
                if not self._stopping:
                    self._log(f"{self.mapping.function}: ReceiveMessage failed: {exc}")
                    await asyncio.sleep(1.0)
                continue
            if not messages:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._invoke(messages))
            self._batches.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()

    async def _receive_batch(self) -> list[dict[str, Any]]:
        wanted = self.mapping.batch_size
        window_end = time.monotonic() + self.mapping.batching_window_s
        messages: list[dict[str, Any]] = []
        while len(messages) < wanted:
            remaining = window_end - time.monotonic()
            wait = self.long_poll_s if not messages else max(0, min(self.long_poll_s, int(remaining)))
            response = await self._call(
                self.client.receive_message,
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(RECEIVE_MAX, wanted - len(messages)),
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            got = response.get("Messages") or []
            messages.extend(got)
            if not got or remaining <= 0:
                break
        return messages

    async def _invoke(self, messages: list[dict[str, Any]]) -> None:
        stats = self.stats
        records = [sqs_event_record(m, queue_arn=self.queue_arn, region=self.region) for m in messages]
        ids = [r["messageId"] for r in records]
        for record in records:
            count = int(record["attributes"].get("ApproximateReceiveCount", "1"))
            stats.receive_counts[record["messageId"]] = max(
                count, stats.receive_counts.pop(record["messageId"], 0)
            )
            if len(stats.receive_counts) > RECEIVE_COUNTS_KEPT:  # the oldest first: a long `make dev`
                del stats.receive_counts[next(iter(stats.receive_counts))]
        stats.invocations += 1
        stats.received += len(records)
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        started = time.monotonic()
        try:
            result = await self.pool.invoke({"Records": records})
        finally:
            stats.in_flight -= 1
        failed: set[str] | None
        if not result.ok:
            failed, outcome = None, f"{result.error_type}"
        elif self.mapping.report_batch_item_failures:
            failed = batch_failures(result.payload, ids)
            outcome = "invalid batchItemFailures response" if failed is None else "ok"
        else:
            failed, outcome = set(), "ok"
        done = [m for m, i in zip(messages, ids, strict=True) if failed is not None and i not in failed]
        if failed is None:
            stats.failed_batches += 1
        returned = len(messages) - len(done)
        stats.returned += returned
        redelivered = sum(1 for r in records if r["attributes"].get("ApproximateReceiveCount", "1") != "1")
        note = f" ({redelivered} redelivered)" if redelivered else ""
        back = f", {returned} back after the visibility timeout" if returned else ""
        self._log(
            f"{self.mapping.function} <- {len(records)} record(s){note}: {outcome}{back} "
            f"{(time.monotonic() - started) * 1000:.0f} ms"
        )
        if done:
            await self._delete(done)

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), RECEIVE_MAX):
            chunk = messages[start : start + RECEIVE_MAX]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            try:
                response = await self._call(
                    self.client.delete_message_batch, QueueUrl=self.queue_url, Entries=entries
                )
            except Exception as exc:
                self._log(f"{self.mapping.function}: DeleteMessageBatch failed ({exc}): redelivered later")
                continue
            self.stats.deleted += len(response.get("Successful") or [])
            for failure in response.get("Failed") or []:
                self._log(f"{self.mapping.function}: could not delete a record: {failure.get('Message')}")


class EventSourceMappings:
    """One :class:`QueuePoller` per mapping whose function runs in ``pools`` (``async with``)."""

    def __init__(
        self,
        mappings: Mapping[str, EventSourceMappingSpec],
        *,
        queues: LocalQueues,
        pools: Mapping[str, FunctionPool],
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.mappings = dict(mappings)
        self.queues = queues
        self.pools = pools
        self._log = log or (lambda line: None)
        self.pollers: dict[str, QueuePoller] = {}  # by mapping resource name
        self._exit = contextlib.AsyncExitStack()

    async def __aenter__(self) -> EventSourceMappings:
        try:
            for resource, mapping in self.mappings.items():
                pool = self.pools.get(mapping.function)
                if pool is None:  # routed elsewhere (--function-url) or not started (invoke's only_functions)
                    self._log(f"{resource}: {mapping.function} does not run in this stack: not polling")
                    continue
                poller = QueuePoller(
                    mapping,
                    pool=pool,
                    client=self.queues.client,
                    queue_url=self.queues.urls[mapping.queue],
                    queue_arn=self.queues.arns[mapping.queue],
                    region=self.queues.region,
                    log=self._log,
                )
                self.pollers[resource] = await self._exit.enter_async_context(poller)
        except BaseException:
            await self._exit.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._exit.aclose()
