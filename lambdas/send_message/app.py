"""sendMessage: validate a chat message and broadcast it to every connection in the sender's room.

The room is the one stored at $connect; a frame naming another room is refused (``forbidden_room``).
Errors go to the sender only, as contract error frames; nothing is broadcast then.
"""

from __future__ import annotations

import uuid
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import runtime
from shared.config import MessagingConfig, TableConfig
from shared.connections import ConnectionStore, dynamodb_client
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.protocol import (
    ErrorCode,
    FrameError,
    error_frame,
    message_frame,
    parse_frame,
    unknown_action_error,
    utc_timestamp,
    validate_chat_message,
)
from shared.rate_limit import TokenBucket
from shared.sender import Sender, endpoint_url

ACTION = "sendMessage"

config = MessagingConfig.from_env()
# Gone connections are deleted from the fan-out threads: one pooled connection each.
store = ConnectionStore(
    TableConfig.from_env().table_name, client=dynamodb_client(pool_size=config.broadcast_concurrency)
)
sender = Sender(pool_size=config.broadcast_concurrency, on_gone=store.delete_if_exists)
bucket = TokenBucket(rate=config.rate_limit_per_second, burst=config.rate_limit_burst)
if config.callback_url:
    sender.client(config.callback_url)  # build the management client during init, not on the first message


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
        return _send(event, connection_id, endpoint)
    except FrameError as error:
        logger.info("message refused", extra={"code": error.code.value})
        count("MessagesRefused")
        sender.post(endpoint, connection_id, error_frame(error.code, error.message))
        return {"statusCode": 200}
    except Exception:
        logger.exception("sendMessage failed")
        count("InternalErrors")
        sender.post(endpoint, connection_id, error_frame(ErrorCode.INTERNAL, "internal error; try again"))
        return {"statusCode": 500}


def _send(event: APIGatewayWebSocketEvent, connection_id: str, endpoint: str) -> dict[str, Any]:
    frame = parse_frame(event.decoded_body)
    if frame.get("action") != ACTION:
        raise unknown_action_error(frame)
    sender_record = store.get(connection_id)
    if sender_record is None:
        raise FrameError(ErrorCode.FORBIDDEN_ROOM, "this connection is not in any room; reconnect")
    logger.append_keys(room_id=sender_record.room_id, user_id=sender_record.user_id)
    room_id = sender_record.room_id
    text = validate_chat_message(frame, connection_room=room_id, max_bytes=config.max_message_bytes)
    if bucket.enabled and not store.take_message_token(sender_record, bucket):
        raise FrameError(
            ErrorCode.RATE_LIMITED,
            f"too many messages: at most {bucket.rate:g} a second (bursts of {bucket.burst}); try again soon",
        )

    members = store.room_members(room_id)
    data = message_frame(
        room_id=room_id,
        user_id=sender_record.user_id,
        name=sender_record.name,
        message=text,
        message_id=uuid.uuid4().hex,
        timestamp=utc_timestamp(),
    )
    result = sender.broadcast(endpoint, (c.connection_id for c in members.connections), data)
    logger.info(
        "broadcast",
        extra={
            "recipients": result.recipients,
            "delivered": result.delivered,
            "gone": result.gone,
            "gone_kept": result.gone_kept,
            "failed": result.failed,
            "query_pages": members.pages,
            "expired_skipped": members.expired_skipped,
        },
    )
    count("MessagesBroadcast")
    count("RecipientsDelivered", result.delivered)
    count("GoneConnectionsRemoved", result.gone)
    count("GoneDeletesFailed", result.gone_kept)
    count("DeliveryFailures", result.failed)
    return {"statusCode": 200}


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
