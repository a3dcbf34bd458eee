"""The chat service: what a frame does, between the handlers (events in, status codes out) and the stores
and sender (I/O). Every decision lives here: who is asking, the rate limit, validation, store, ack, fan-out.

Refusals raise :class:`~shared.protocol.FrameError` (the handler answers the sender with its error frame);
a frame dropped by the rate limit returns ``None`` and is answered with nothing. A store that fails raises
before anything is broadcast, so the sender is told ``internal`` and may retry with the same
``client_msg_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.connections import Connection, ConnectionStore, RoomMembers
from shared.messages import HistoryPage, MessageStore, StoredMessage
from shared.observability import logger
from shared.protocol import (
    ErrorCode,
    FrameError,
    ack_frame,
    client_msg_id,
    encode,
    error_frame,
    history_frame,
    parse_frame,
    unknown_action_error,
    validate_chat_message,
    validate_history_request,
)
from shared.rate_limit import RateLimiter, Verdict
from shared.sender import BroadcastResult, Sender

SEND_MESSAGE = "sendMessage"
GET_HISTORY = "getHistory"
# PostToConnection refuses more than 128 KiB: a history frame is cut to fit (has_more then stays true).
MAX_FRAME_BYTES = 128 * 1024


@dataclass(frozen=True, kw_only=True)
class SendResult:
    message: StoredMessage
    duplicate: bool  # a repeated client_msg_id: nothing was stored, the first message went out again
    members: RoomMembers
    broadcast: BroadcastResult


@dataclass(frozen=True, kw_only=True)
class HistoryResult:
    page: HistoryPage
    sent: int  # messages in the frame (fewer than the page when 128 KiB cut it)
    has_more: bool


class ChatService:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        messages: MessageStore | None,
        limiter: RateLimiter,
        sender: Sender,
        max_message_bytes: int = 4096,
    ) -> None:
        self.connections = connections
        self.messages = messages
        self.limiter = limiter
        self.sender = sender
        self.max_message_bytes = max_message_bytes

    def admit(self, connection_id: str) -> Connection | None:
        """The sender's live record after counting this frame against its user's rate limit.

        Raises ``rate_limited`` for the first refused frame of a window; :class:`Dropped` for the rest.
        None when the connection has no record (it cannot be counted, and is refused later).
        """
        connection = self.connections.get(connection_id)
        if connection is None:
            return None
        verdict = self.limiter.take(connection.user_id)
        if verdict is Verdict.REFUSED_NOTIFY:
            bucket = self.limiter.bucket
            raise FrameError(
                ErrorCode.RATE_LIMITED,
                f"too many frames: at most {bucket.rate:g} a second (bursts of {bucket.burst}); "
                "frames beyond it are dropped",
            )
        if verdict is Verdict.REFUSED_SILENT:
            raise Dropped
        return connection

    def send_message(self, endpoint: str, connection_id: str, body: str | None) -> SendResult:
        """Store a chat message, acknowledge it to the sender, then fan it out to its room."""
        connection = self.admit(connection_id)
        frame = parse_frame(body)
        if frame.get("action") != SEND_MESSAGE:
            raise unknown_action_error(frame)
        connection = _in_a_room(connection)
        text = validate_chat_message(
            frame, connection_room=connection.room_id, max_bytes=self.max_message_bytes
        )
        given_id = client_msg_id(frame)
        assert self.messages is not None
        saved = self.messages.save(
            room_id=connection.room_id,
            user_id=connection.user_id,
            text=text,
            name=connection.name,
            client_msg_id=given_id,
        )
        message = saved.message
        if saved.duplicate and message.room_id != connection.room_id:
            # Acking or re-broadcasting would post the first message into a room this send did not name.
            raise FrameError(
                ErrorCode.INVALID_REQUEST,
                f'client_msg_id "{given_id}" was already used for a message in another room; use a new one',
            )
        if given_id is not None:
            self.sender.post(
                endpoint,
                connection_id,
                ack_frame(client_msg_id=given_id, message_id=message.message_id, room_id=message.room_id),
            )
        members = self.connections.room_members(message.room_id)
        result = self.sender.broadcast(
            endpoint, (c.connection_id for c in members.connections), encode(message.as_frame())
        )
        return SendResult(message=message, duplicate=saved.duplicate, members=members, broadcast=result)

    def get_history(self, endpoint: str, connection_id: str, body: str | None) -> HistoryResult:
        """Answer the sender with one page of its room's history."""
        connection = self.admit(connection_id)
        frame = parse_frame(body)
        if frame.get("action") != GET_HISTORY:
            raise unknown_action_error(frame)
        connection = _in_a_room(connection)
        request = validate_history_request(frame, connection_room=connection.room_id)
        assert self.messages is not None
        page = self.messages.page(
            request.room_id, before=request.before, after=request.after, limit=request.limit
        )
        frames = [message.as_frame() for message in page.messages]
        data, sent = _fit(request.room_id, frames, page.has_more, newest_kept=request.after is None)
        self.sender.post(endpoint, connection_id, data)
        return HistoryResult(page=page, sent=sent, has_more=page.has_more or sent < len(frames))

    def refuse_unrouted(self, endpoint: str, connection_id: str, body: str | None) -> FrameError | None:
        """A frame no route takes: its error (``invalid_json`` / ``unknown_action``), counted like any
        other frame (None when the rate limit drops it silently)."""
        try:
            self.admit(connection_id)
            error = unknown_action_error(parse_frame(body))
        except FrameError as refused:
            error = refused
        except Dropped:
            return None
        except Exception:
            # The frame cannot be counted (DynamoDB unreachable): its answer costs no more than the count
            # would, so it is answered anyway rather than with "internal".
            logger.warning("rate limit unavailable; answering the frame anyway", exc_info=True)
            try:
                error = unknown_action_error(parse_frame(body))
            except FrameError as refused:
                error = refused
        self.sender.post(endpoint, connection_id, error_frame(error.code, error.message))
        return error


class Dropped(Exception):
    """The rate limit dropped the frame: answer nothing."""


def _in_a_room(connection: Connection | None) -> Connection:
    if connection is None:
        raise FrameError(ErrorCode.FORBIDDEN_ROOM, "this connection is not in any room; reconnect")
    return connection


def _fit(
    room_id: str, frames: list[dict[str, Any]], has_more: bool, *, newest_kept: bool
) -> tuple[bytes, int]:
    """The history frame, without the messages farthest from the cursor that do not fit in 128 KiB."""
    budget = MAX_FRAME_BYTES - len(history_frame(room_id=room_id, messages=[], has_more=True))
    order = list(reversed(frames)) if newest_kept else list(frames)
    kept = 0
    for frame in order:
        budget -= len(encode(frame)) + 1  # and its comma
        if budget < 0:
            break
        kept += 1
    chosen = frames[len(frames) - kept :] if newest_kept else frames[:kept]
    data = history_frame(room_id=room_id, messages=chosen, has_more=has_more or kept < len(frames))
    return data, kept
