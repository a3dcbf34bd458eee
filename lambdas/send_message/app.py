"""sendMessage: store a chat message, acknowledge it to the sender, then broadcast it to the room.

The room is any the connection is in (omitted: its first room); another is refused (``forbidden_room``).
Errors go to the sender only, as error frames; nothing is broadcast then. A message is broadcast only
once it is stored, and a repeated ``client_msg_id`` broadcasts the stored message again (docs/history.md).
Past ``FANOUT_SHARD_SIZE`` live connections the broadcast is queued as shard jobs for the fanout function
(docs/fanout.md); the ack then follows the queueing, and a failure to queue is an ``internal`` error frame.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import runtime
from shared.chat import Dropped
from shared.config import MessagingConfig
from shared.fanout_queue import EnqueueFailed
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.protocol import ErrorCode, FrameError, error_frame
from shared.sender import endpoint_url
from shared.wiring import chat_service

config = MessagingConfig.from_env()
service = chat_service(
    pool_size=config.broadcast_concurrency, max_message_bytes=config.max_message_bytes, fans_out=True
)
store = service.connections
messages = service.messages
limiter = service.limiter
sender = service.sender


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.request_context
    connection_id = request.connection_id
    endpoint = endpoint_url(config.callback_url, domain_name=request.domain_name, stage=request.stage)
    logger.append_keys(connection_id=connection_id)
    try:
        result = service.send_message(endpoint, connection_id, event.decoded_body)
    except Dropped:
        count("FramesDropped")
        return {"statusCode": 200}
    except FrameError as error:
        logger.info("message refused", extra={"code": error.code.value})
        count("MessagesRefused")
        sender.post(endpoint, connection_id, error_frame(error.code, error.message))
        return {"statusCode": 200}
    except EnqueueFailed as error:
        # Stored, not acked: the same client_msg_id again re-queues every shard (members drop repeats).
        logger.exception("message stored but its shards not all queued", extra={"enqueued": error.enqueued})
        count("FanoutEnqueueFailures")
        count("InternalErrors")
        sender.post(
            endpoint,
            connection_id,
            error_frame(
                ErrorCode.INTERNAL,
                "the message was stored but not delivered to everyone; send it again with the same "
                "client_msg_id to complete it",
            ),
        )
        return {"statusCode": 500}
    except Exception:
        logger.exception("sendMessage failed")
        count("InternalErrors")
        sender.post(endpoint, connection_id, error_frame(ErrorCode.INTERNAL, "internal error; try again"))
        return {"statusCode": 500}

    message, fanout, broadcast = result.message, result.fanout, result.broadcast
    logger.info(
        "broadcast",
        extra={
            "room_id": message.room_id,
            "user_id": message.user_id,
            "message_id": message.message_id,
            "duplicate": result.duplicate,
            "recipients": broadcast.recipients,
            "delivered": broadcast.delivered,
            "gone": broadcast.gone,
            "gone_kept": broadcast.gone_kept,
            "failed": broadcast.failed,
            "shards": fanout.shards,
            "query_pages": fanout.pages,
            "expired_skipped": fanout.expired_skipped,
        },
    )
    count("MessagesRebroadcast" if result.duplicate else "MessagesStored")
    count("MessagesBroadcast")
    count("FanoutShardsQueued", fanout.shards)
    count("RecipientsDelivered", broadcast.delivered)
    count("GoneConnectionsRemoved", broadcast.gone)
    count("GoneDeletesFailed", broadcast.gone_kept)
    count("DeliveryFailures", broadcast.failed)
    return {"statusCode": 200}


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
