"""leave: take a room off the connection and answer ``left``; the room hears ``presence`` offline when
that was the user's last connection in it (docs/rooms.md). Leaving a room one is not in is no error."""

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
service = chat_service(pool_size=config.broadcast_concurrency, stores_messages=False, fans_out=True)


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    answered = run_frame(
        event, service.leave, sender=service.sender, callback_url=config.callback_url, action="leave"
    )
    if answered.result is not None:
        result = answered.result
        logger.info(
            "left", extra={"room_id": result.room_id, "was_in": result.changed, "offline": result.presence}
        )
        count("RoomsLeft", int(result.changed))
        count("PresenceOffline", int(result.presence))
        count("PresenceFailures", int(result.presence_failed))  # left all the same (logged)
    return answered.status


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
