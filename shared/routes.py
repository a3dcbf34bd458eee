"""What every frame route's handler does around its service call: the endpoint, the outcome mapped to a
status code and, for a refusal or a surprise, the error frame to the sender."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from shared.chat import Dropped
from shared.fanout_queue import EnqueueFailed
from shared.observability import count, logger
from shared.protocol import ErrorCode, FrameError, error_frame
from shared.sender import Sender, endpoint_url

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Answered(Generic[T]):
    status: dict[str, Any]
    result: T | None  # None: refused, dropped or failed (already answered)


def run_frame(
    event: APIGatewayWebSocketEvent,
    call: Callable[[str, str, str | None], T],
    *,
    sender: Sender,
    callback_url: str | None,
    action: str,
) -> Answered[T]:
    request = event.request_context
    connection_id = request.connection_id
    endpoint = endpoint_url(callback_url, domain_name=request.domain_name, stage=request.stage)
    logger.append_keys(connection_id=connection_id)
    try:
        return Answered(status={"statusCode": 200}, result=call(endpoint, connection_id, event.decoded_body))
    except Dropped:
        count("FramesDropped")
    except FrameError as error:
        logger.info(f"{action} refused", extra={"code": error.code.value})
        count("FramesRefused")
        sender.post(endpoint, connection_id, error_frame(error.code, error.message))
    except EnqueueFailed as error:
        # join: its online presence could not be queued for the whole room, so the join was undone.
        logger.exception(f"{action} undone: shard jobs not all queued", extra={"enqueued": error.enqueued})
        count("FanoutEnqueueFailures")
        count("InternalErrors")
        sender.post(
            endpoint,
            connection_id,
            error_frame(ErrorCode.INTERNAL, f"the room could not be told; {action} was undone: try again"),
        )
        return Answered(status={"statusCode": 500}, result=None)
    except Exception:
        logger.exception(f"{action} failed")
        count("InternalErrors")
        sender.post(endpoint, connection_id, error_frame(ErrorCode.INTERNAL, "internal error; try again"))
        return Answered(status={"statusCode": 500}, result=None)
    return Answered(status={"statusCode": 200}, result=None)
