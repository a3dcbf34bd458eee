"""sendDirect: store a direct message under the conversation's own key, acknowledge it, then deliver it
to every live connection of the recipient and to the sender's other connections (docs/rooms.md)."""

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
service = chat_service(pool_size=config.broadcast_concurrency, max_message_bytes=config.max_message_bytes)


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    answered = run_frame(
        event,
        service.send_direct,
        sender=service.sender,
        callback_url=config.callback_url,
        action="sendDirect",
    )
    if answered.result is not None:
        result = answered.result
        broadcast = result.broadcast
        logger.info(
            "direct",
            extra={
                "message_id": result.message.message_id,
                "to_user_id": result.message.to_user_id,
                "duplicate": result.duplicate,
                "recipients": broadcast.recipients,
                "delivered": broadcast.delivered,
                "gone": broadcast.gone,
                "failed": broadcast.failed,
            },
        )
        count("DirectMessagesRebroadcast" if result.duplicate else "DirectMessagesStored")
        count("RecipientsDelivered", broadcast.delivered)
        count("GoneConnectionsRemoved", broadcast.gone)
        count("DeliveryFailures", broadcast.failed)
    return answered.status


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
