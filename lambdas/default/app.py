"""$default: frames no route takes. Answers the sender with ``invalid_json`` or ``unknown_action``."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import runtime
from shared.config import callback_url_from_env
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.protocol import FrameError, error_frame, parse_frame, unknown_action_error
from shared.sender import Sender, endpoint_url

callback_url = callback_url_from_env()
# The default route never deletes records (no table access): a gone sender is left to $disconnect and TTL.
sender = Sender(pool_size=1, on_gone=lambda connection_id: None)
if callback_url:
    sender.client(callback_url)  # build the management client during init, not on the first frame


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.request_context
    logger.append_keys(connection_id=request.connection_id)
    try:
        error = unknown_action_error(parse_frame(event.decoded_body))
    except FrameError as invalid:
        error = invalid
    logger.info("frame refused", extra={"code": error.code.value})
    count("MessagesRefused")
    endpoint = endpoint_url(callback_url, domain_name=request.domain_name, stage=request.stage)
    sender.post(endpoint, request.connection_id, error_frame(error.code, error.message))
    return {"statusCode": 200}


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
