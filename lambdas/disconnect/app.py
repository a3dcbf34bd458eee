"""$disconnect: delete the connection's record.

Best effort on AWS's side: API Gateway can miss a $disconnect, so records also carry a TTL and the
broadcast path removes connections the management API reports gone.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from shared import deadline, runtime
from shared.config import DeadlineConfig, TableConfig
from shared.connections import ConnectionStore, dynamodb_client
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer

store = ConnectionStore(
    TableConfig.from_env().table_name, client=dynamodb_client(connect_timeout=1, read_timeout=2)
)

margin_seconds = DeadlineConfig.from_env().margin_seconds


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@deadline.aws_deadline(margin_seconds=margin_seconds)
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.request_context
    logger.append_keys(connection_id=request.connection_id)
    try:
        store.delete(request.connection_id)
    except (ClientError, BotoCoreError, deadline.DeadlineExceeded):
        logger.exception("could not delete the connection (its ttl still expires it)")
        count("ConnectionStoreErrors")
        raise
    logger.info(
        "disconnected",
        extra={"status_code": request.disconnect_status_code, "reason": request.disconnect_reason},
    )
    count("ConnectionsClosed")
    return {"statusCode": 200}


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
