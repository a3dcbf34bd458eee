"""join: add a room to the connection, checked like a connect (pattern, rooms claim, at most
MAX_ROOMS_PER_CONNECTION), answer ``joined``; the room hears ``presence`` online on the user's first
connection in it (docs/rooms.md)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import runtime
from shared.config import MessagingConfig, max_rooms_per_connection
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.routes import run_frame
from shared.wiring import chat_service

config = MessagingConfig.from_env()
service = chat_service(
    pool_size=config.broadcast_concurrency,
    stores_messages=False,
    max_rooms=max_rooms_per_connection(),
    fans_out=True,
)


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    answered = run_frame(
        event, service.join, sender=service.sender, callback_url=config.callback_url, action="join"
    )
    if answered.result is not None:
        result = answered.result
        logger.info(
            "joined", extra={"room_id": result.room_id, "new": result.changed, "online": result.presence}
        )
        count("RoomsJoined", int(result.changed))
        count("PresenceOnline", int(result.presence))
    return answered.status


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
