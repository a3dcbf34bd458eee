"""$default: frames no route takes. Answers the sender with ``invalid_json`` or ``unknown_action``.

Each such frame counts against its user's rate limit like any other (a flood of junk is dropped, and
told ``rate_limited`` once per window).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import runtime
from shared.config import callback_url_from_env
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.protocol import ErrorCode, error_frame
from shared.sender import endpoint_url
from shared.wiring import chat_service

callback_url = callback_url_from_env()
# No message store here: only the connection record (whose user is counted) and the rate-limit bucket.
service = chat_service(stores_messages=False, uses_rooms=False)


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.request_context
    logger.append_keys(connection_id=request.connection_id)
    endpoint = endpoint_url(callback_url, domain_name=request.domain_name, stage=request.stage)
    try:
        error = service.refuse_unrouted(endpoint, request.connection_id, event.decoded_body)
    except Exception:
        logger.exception("$default failed")
        count("InternalErrors")
        service.sender.post(
            endpoint, request.connection_id, error_frame(ErrorCode.INTERNAL, "internal error; try again")
        )
        return {"statusCode": 500}
    if error is None:
        count("FramesDropped")
    else:
        logger.info("frame refused", extra={"code": error.code.value})
        count("MessagesRefused")
    return {"statusCode": 200}


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
