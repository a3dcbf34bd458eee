"""publish: a backend posts a message to a room or a user, from a system sender (docs/fanout.md).

No route: a backend invokes it with IAM (``lambda:InvokeFunction`` on this function is the only gate; it is
not rate limited). The payload is ``{"room_id" | "to_user_id", "message", "user_id"?, "name"?,
"client_msg_id"?}``, checked with the protocol's validators; the message is stored (history), then fanned
out like a sent one (sharded past the shard size). The result is JSON, never a stack trace::

    {"ok": true, "message_id": "01J...", "duplicate": false, "recipients": 3, "shards": 0}
    {"ok": false, "error": {"code": "invalid_request", "message": "\\"room_id\\" must be ..."}}
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import deadline, runtime
from shared.config import ConfigError, DeadlineConfig, MessagingConfig
from shared.fanout_queue import EnqueueFailed
from shared.observability import count, logger, metrics, tracer
from shared.protocol import ErrorCode, FrameError
from shared.publish import parse_publish
from shared.wiring import chat_service

config = MessagingConfig.from_env()
if config.callback_url is None:  # no event to build it from: Terraform always sets it
    raise ConfigError("environment variable WEBSOCKET_CALLBACK_URL is required but not set")
endpoint: str = config.callback_url
margin_seconds = DeadlineConfig.from_env().margin_seconds
service = chat_service(
    pool_size=config.broadcast_concurrency,
    rate_limited=False,
    fans_out=True,
    max_message_bytes=config.max_message_bytes,
)


def _error(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code.value, "message": message}, **extra}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@deadline.aws_deadline(margin_seconds=margin_seconds)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_publish(event, max_bytes=service.max_message_bytes)
        result = service.publish(endpoint, request)
    except FrameError as error:
        logger.info("publish refused", extra={"code": error.code.value})
        count("PublishRefused")
        return _error(error.code, error.message)
    except EnqueueFailed as error:
        logger.exception("publish stored but not queued", extra={"enqueued": error.enqueued})
        count("FanoutEnqueueFailures")
        count("InternalErrors")
        return _error(
            ErrorCode.INTERNAL,
            "the message was stored but not queued to every member: invoke again with the same "
            "client_msg_id to complete its fan-out",
        )
    except Exception:
        logger.exception("publish failed")
        count("InternalErrors")
        return _error(ErrorCode.INTERNAL, "internal error; try again")
    message, fanout = result.message, result.fanout
    logger.info(
        "published",
        extra={
            "room_id": message.room_id,
            "user_id": message.user_id,
            "message_id": message.message_id,
            "duplicate": result.duplicate,
            "recipients": fanout.recipients,
            "shards": fanout.shards,
            "delivered": fanout.broadcast.delivered,
        },
    )
    count("MessagesPublished")
    count("FanoutShardsQueued", fanout.shards)
    count("RecipientsDelivered", fanout.broadcast.delivered)
    count("GoneConnectionsRemoved", fanout.broadcast.gone)
    count("DeliveryFailures", fanout.broadcast.failed)
    return {
        "ok": True,
        "message_id": message.message_id,
        "duplicate": result.duplicate,
        "recipients": fanout.recipients,
        "shards": fanout.shards,
    }


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
