"""$disconnect: delete the connection's record and every room membership it had; each room where that
was the user's last connection hears them go offline (docs/rooms.md).

Best effort on AWS's side: API Gateway can miss a $disconnect, so records and memberships also carry a
TTL, and every broadcast removes connections the management API reports gone.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from shared import deadline, runtime
from shared.config import DeadlineConfig, MessagingConfig
from shared.messages import StoreUnavailable
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.sender import endpoint_url
from shared.wiring import chat_service

config = MessagingConfig.from_env()
callback_url = config.callback_url
# Presence goes to each room within this route's timeout: posted with the broadcast pool, or queued as
# shard jobs past FANOUT_SHARD_SIZE (docs/fanout.md). Every membership is removed before any is announced.
service = chat_service(
    pool_size=config.broadcast_concurrency,
    stores_messages=False,
    rate_limited=False,
    connect_timeout=1,
    read_timeout=2,
    fans_out=True,
)
store = service.connections

margin_seconds = DeadlineConfig.from_env().margin_seconds


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@deadline.aws_deadline(margin_seconds=margin_seconds)
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.request_context
    logger.append_keys(connection_id=request.connection_id)
    endpoint = endpoint_url(callback_url, domain_name=request.domain_name, stage=request.stage)
    try:
        rooms = service.disconnect(endpoint, request.connection_id)
    except (ClientError, BotoCoreError, StoreUnavailable, deadline.DeadlineExceeded):
        logger.exception("could not delete the connection (its ttl still expires it)")
        count("ConnectionStoreErrors")
        raise
    offline = sum(room.presence for room in rooms)
    logger.info(
        "disconnected",
        extra={
            "status_code": request.disconnect_status_code,
            "reason": request.disconnect_reason,
            "rooms": len(rooms),
            "offline": offline,
        },
    )
    count("ConnectionsClosed")
    count("PresenceOffline", offline)
    count("PresenceFailures", sum(room.presence_failed for room in rooms))
    return {"statusCode": 200}


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
