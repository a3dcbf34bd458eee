"""$connect: verify the JWT, check the room, store the connection in its first room (docs/auth.md,
docs/rooms.md).

Checks run in the documented order: 401 (token), then 400 (room_id), then 403 (user_id, rooms claim).
Nothing is stored unless every check passes. A failed write, or one that could not finish in time, refuses
the connection and deletes the record: the write may have landed although its answer never came. The
token's rooms claim is kept on the record, so a later ``join`` is checked like this connect. The room hears
the user come online when this is their first connection in it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from shared import deadline, runtime
from shared.auth import AuthError, TokenVerifier
from shared.config import AuthConfig, DeadlineConfig, MessagingConfig
from shared.fanout_queue import EnqueueFailed
from shared.messages import StoreUnavailable
from shared.observability import CORRELATION_ID_PATH, count, logger, metrics, tracer
from shared.protocol import is_valid_room_id
from shared.sender import endpoint_url
from shared.wiring import chat_service

# A browser can't set headers on a WebSocket, but it can offer subprotocols: ["chat.v1", "bearer.<JWT>"].
SUBPROTOCOL = "chat.v1"
BEARER_PREFIX = "bearer."

verifier = TokenVerifier(AuthConfig.from_env())
config = MessagingConfig.from_env()
callback_url = config.callback_url
# Presence goes to the whole room within this route's timeout: posted with the broadcast pool, or queued
# as shard jobs past FANOUT_SHARD_SIZE (docs/fanout.md); a failure to queue refuses the handshake. One
# DynamoDB attempt is at most 3 s: the 10 s function keeps room for a retry and for the delete that undoes
# a write whose answer was lost.
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


@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH, clear_state=True)
@tracer.capture_lambda_handler
@deadline.aws_deadline(margin_seconds=margin_seconds)
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    connection_id = event.request_context.connection_id
    params = event.get("queryStringParameters") or {}
    offered = _offered_subprotocols(event)
    logger.append_keys(connection_id=connection_id, room_id=params.get("room_id"))

    try:
        # A JWKS fetch leaves time for the write and its undo.
        with deadline.reserve(2 * deadline.attempt_seconds(store.client)):
            identity = verifier.verify(params.get("token") or _bearer_subprotocol(offered))
    except AuthError as error:
        return _refuse(error.status, error.reason)
    room_id = params.get("room_id")
    if not is_valid_room_id(room_id):
        return _refuse(400, "room_id is required and must match ^[A-Za-z0-9_.:-]{1,64}$")
    if "user_id" in params and params["user_id"] != identity.user_id:
        return _refuse(403, "user_id does not match the token's subject")
    if not identity.may_join(room_id):
        return _refuse(403, "the token does not grant this room")

    chosen = _choose_subprotocol(offered)
    if offered and chosen is None:
        return _refuse(400, f'offer the "{SUBPROTOCOL}" subprotocol beside the bearer token')

    request = event.request_context
    endpoint = endpoint_url(callback_url, domain_name=request.domain_name, stage=request.stage)
    try:
        with deadline.reserve(deadline.attempt_seconds(store.client)):  # time left for the delete below
            result = service.connect(
                endpoint,
                connection_id=connection_id,
                room_id=room_id,
                user_id=identity.user_id,
                name=identity.name,
                granted_rooms=identity.rooms,
            )
        late = deadline.remaining()
        if late is not None and late < 0:
            raise deadline.DeadlineExceeded(f"the connection was stored {-late:.2f} s after the deadline")
    except (ClientError, BotoCoreError, StoreUnavailable, deadline.DeadlineExceeded, EnqueueFailed) as error:
        # Refused (API Gateway answers 502), so no record may stay: the write may have landed before
        # its response was lost.
        logger.exception("could not store the connection")
        count("FanoutEnqueueFailures" if isinstance(error, EnqueueFailed) else "ConnectionStoreErrors")
        # Tried even past the deadline: a late delete is harmless, a record left behind is not.
        with contextlib.suppress(Exception), deadline.suspended():
            store.delete(connection_id)
        raise
    logger.info("connected", extra={"user_id": identity.user_id, "online": result.presence})
    count("ConnectionsOpened")
    count("PresenceOnline", int(result.presence))
    response: dict[str, Any] = {"statusCode": 200}
    if chosen is not None:
        response["headers"] = {"Sec-WebSocket-Protocol": chosen}
    return response


def _refuse(status: int, reason: str) -> dict[str, Any]:
    logger.info("connection refused", extra={"status": status, "reason": reason})
    count("ConnectionsRefused")
    return {"statusCode": status, "body": reason}


def _offered_subprotocols(event: APIGatewayWebSocketEvent) -> list[str]:
    header = event.headers.get("Sec-WebSocket-Protocol") or ""
    return [p.strip() for p in header.split(",") if p.strip()]


def _bearer_subprotocol(offered: list[str]) -> str | None:
    return next((p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)), None)


def _choose_subprotocol(offered: list[str]) -> str | None:
    """The subprotocol to echo: API Gateway fails the browser's handshake unless one offered is chosen.
    Never the bearer entry: that would echo the token."""
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return next((p for p in offered if not p.startswith(BEARER_PREFIX)), None)


runtime.init_done()  # last: freeze what init allocated, resume garbage collection
