"""typing: tell a room's other users that this one is typing. Never stored; one per connection and room
every 2 s, the rest dropped silently (docs/rooms.md)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import runtime
from shared.config import MessagingConfig
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.routes import run_frame
from shared.wiring import chat_service

config = MessagingConfig.from_env()
service = chat_service(pool_size=config.broadcast_concurrency, stores_messages=False, bounds_typing=True)


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    answered = run_frame(
        event, service.typing, sender=service.sender, callback_url=config.callback_url, action="typing"
    )
    if answered.result is not None:
        logger.info("typing", extra={"recipients": answered.result.recipients})
        count("TypingBroadcast")
        count("GoneConnectionsRemoved", answered.result.broadcast.gone)
    return answered.status


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
