"""fanout: post the shard jobs a large room's broadcast left on the fanout queue (docs/fanout.md).

Invoked by the queue's event source mapping with a batch of SQS records, each one shard job. Each job is
posted with the same rules as any broadcast (410: that connection removed; 429/5xx: retried, never
removed), and no post starts near the invocation's deadline. A job with a post that still failed or never
started, or a body that is not a job, is reported in ``batchItemFailures``: only that record comes back,
after a short backoff (at once for a body that is not a job; never the queue's visibility timeout), and
after ``maxReceiveCount`` receives SQS moves it to the dead-letter queue. Members who got a job already
get it again then; clients drop the repeat by its message_id.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import deadline, runtime
from shared.config import DeadlineConfig, MessagingConfig
from shared.observability import count, logger, metrics, tracer
from shared.shards import BadJob, ShardIncomplete, decode_job, retry_delay
from shared.wiring import chat_service

config = MessagingConfig.from_env()
margin_seconds = DeadlineConfig.from_env().margin_seconds
service = chat_service(
    pool_size=config.broadcast_concurrency, rate_limited=False, stores_messages=False, fans_out=True
)
# A batch whose every shard failed is answered like any other (each record in batchItemFailures), not
# raised: raising would count a function error for what is a retried delivery.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def post_shard(record: SQSRecord) -> None:
    try:
        job = decode_job(record.body)
    except BadJob:
        logger.exception("not a shard job", extra={"sqs_message_id": record.message_id})
        count("ShardJobsRefused")
        # It never becomes one: back at once, so its receives run out and it is in the DLQ in seconds,
        # not after maxReceiveCount visibility timeouts (6 min each).
        if service.fanout is not None:
            service.fanout.retry_later(record.receipt_handle, 0)
        raise
    result = service.fan_out_shard(job)
    broadcast = result.broadcast
    logger.info(
        "shard posted",
        extra={
            "room_id": job.room_id,
            "message_id": job.message_id,
            "recipients": broadcast.recipients,
            "delivered": broadcast.delivered,
            "gone": broadcast.gone,
            "gone_kept": broadcast.gone_kept,
            "failed": broadcast.failed,
            "deferred": broadcast.deferred,
            "receive_count": record.attributes.approximate_receive_count,
        },
    )
    count("ShardsPosted")
    count("RecipientsDelivered", broadcast.delivered)
    count("GoneConnectionsRemoved", broadcast.gone)
    count("GoneDeletesFailed", broadcast.gone_kept)
    count("DeliveryFailures", broadcast.failed)
    count("PostsDeferred", broadcast.deferred)
    if broadcast.failed or broadcast.deferred:
        count("ShardsFailed")
        if service.fanout is not None:
            receives = int(record.attributes.approximate_receive_count or 1)
            service.fanout.retry_later(record.receipt_handle, retry_delay(receives))
        raise ShardIncomplete(
            f"{broadcast.failed} of {broadcast.recipients} posts failed, {broadcast.deferred} not started "
            "(the invocation's deadline was near)"
        )


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@deadline.aws_deadline(margin_seconds=margin_seconds)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=post_shard, processor=processor, context=context
    )


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
