"""listMembers: answer the distinct users with a live connection in a room the connection is in, each
once (docs/rooms.md)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import runtime
from shared.config import callback_url_from_env
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.routes import run_frame
from shared.wiring import chat_service

callback_url = callback_url_from_env()
service = chat_service(stores_messages=False)


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    answered = run_frame(
        event, service.list_members, sender=service.sender, callback_url=callback_url, action="listMembers"
    )
    if answered.result is not None:
        logger.info("members", extra={"members": len(answered.result)})
        count("MemberLists")
    return answered.status


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
