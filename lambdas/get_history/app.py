"""getHistory: one page of the connection's room's stored messages, to the sender only (docs/history.md).

``before`` pages back in time, ``after`` forward (how a client that reconnects fetches what it missed);
``has_more`` says whether another page exists in that direction.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import runtime
from shared.chat import Dropped
from shared.config import callback_url_from_env
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.protocol import ErrorCode, FrameError, error_frame
from shared.sender import endpoint_url
from shared.wiring import chat_service

callback_url = callback_url_from_env()
service = chat_service(uses_rooms=False)
sender = service.sender


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.request_context
    connection_id = request.connection_id
    endpoint = endpoint_url(callback_url, domain_name=request.domain_name, stage=request.stage)
    logger.append_keys(connection_id=connection_id)
    try:
        result = service.get_history(endpoint, connection_id, event.decoded_body)
    except Dropped:
        count("FramesDropped")
        return {"statusCode": 200}
    except FrameError as error:
        logger.info("history refused", extra={"code": error.code.value})
        count("HistoryRefused")
        sender.post(endpoint, connection_id, error_frame(error.code, error.message))
        return {"statusCode": 200}
    except Exception:
        logger.exception("getHistory failed")
        count("InternalErrors")
        sender.post(endpoint, connection_id, error_frame(ErrorCode.INTERNAL, "internal error; try again"))
        return {"statusCode": 500}
    logger.info(
        "history",
        extra={
            "messages": result.sent,
            "has_more": result.has_more,
            "expired_skipped": result.page.expired_skipped,
        },
    )
    count("HistoryPages")
    return {"statusCode": 200}


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
