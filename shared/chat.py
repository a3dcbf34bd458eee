"""The chat service: what a frame does, between the handlers (events in, status codes out) and the stores
and sender (I/O). Every decision lives here: who is asking, the rate limit, validation, store, ack, fan-out,
rooms and presence (docs/rooms.md).

Refusals raise :class:`~shared.protocol.FrameError` (the handler answers the sender with its error frame);
a frame dropped by the rate limit (or a typing frame within its 2 s) raises :class:`Dropped` and is answered
with nothing. A store that fails raises before anything is broadcast, so the sender is told ``internal`` and
may retry with the same ``client_msg_id``.

A broadcast that finds connections gone (410), or memberships past their ``ttl``, removes each of those
connections from every room it was in, by exact key, after the broadcast: a user whose last connection that
was goes offline there, which is broadcast in turn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shared import deadline, ids
from shared.connections import Connection, ConnectionStore, JoinOutcome
from shared.fanout_queue import EnqueueFailed, FanoutQueue
from shared.messages import HistoryPage, MessageStore, StoredMessage, conversation_key
from shared.observability import logger
from shared.protocol import (
    ErrorCode,
    FrameError,
    RoomsOf,
    ack_frame,
    client_msg_id,
    direct_ack_frame,
    direct_object,
    encode,
    error_frame,
    history_frame,
    members_frame,
    message_object,
    message_text,
    parse_frame,
    presence_frame,
    requested_room,
    room_frame,
    room_to_join,
    typing_frame,
    unknown_action_error,
    user_id_field,
    utc_timestamp,
    validate_chat_message,
    validate_history_request,
)
from shared.publish import PublishRequest
from shared.rate_limit import RateLimiter, Verdict
from shared.rooms import Membership, MembershipStore, RoomMemberships
from shared.sender import BroadcastResult, Sender
from shared.shards import (
    MAX_JOB_BYTES,
    ONE_MEMBER_BYTES,
    JobTooLarge,
    ShardJob,
    ShardMember,
    encode_job,
    job_overhead,
    plan_shards,
)

SEND_MESSAGE = "sendMessage"
GET_HISTORY = "getHistory"
JOIN = "join"
LEAVE = "leave"
LIST_MEMBERS = "listMembers"
TYPING = "typing"
SEND_DIRECT = "sendDirect"
# PostToConnection refuses more than 128 KiB: a history frame is cut to fit (has_more then stays true).
MAX_FRAME_BYTES = 128 * 1024
# A 410 this soon after $connect may be a connection whose $connect is still running: it is kept.
CONNECT_GRACE_SECONDS = 10
# A shard stops starting posts this close to its invocation's deadline: time for one post attempt still
# in flight (the management client's 2 s connect + 5 s read) and for the SQS call that brings the record
# back soon (2 s + 3 s), so the record is reported failed instead of Lambda timing the whole batch out.
SHARD_RESERVE_SECONDS = 12.0
# Stands for a message id (a ULID: 26 characters) when a frame is measured before the message is stored.
_AN_ID = "0" * 26
_NO_BROADCAST = BroadcastResult(recipients=0, delivered=0, gone=0, gone_kept=0, failed=0)


@dataclass(frozen=True, kw_only=True)
class Fanout:
    """One broadcast: who was read, what posting did, and what the cleanup after it removed."""

    recipients: int = 0
    pages: int = 0
    expired_skipped: int = 0
    broadcast: BroadcastResult = _NO_BROADCAST  # nothing posted here when sharded
    shards: int = 0  # shard jobs queued for the fanout function (0: posted here)


@dataclass(frozen=True, kw_only=True)
class SendResult:
    message: StoredMessage
    duplicate: bool  # a repeated client_msg_id: nothing was stored, the first message went out again
    fanout: Fanout

    @property
    def broadcast(self) -> BroadcastResult:
        return self.fanout.broadcast


@dataclass(frozen=True, kw_only=True)
class HistoryResult:
    page: HistoryPage
    sent: int  # messages in the frame (fewer than the page when 128 KiB cut it)
    has_more: bool


@dataclass(frozen=True, kw_only=True)
class RoomResult:
    """What join / leave / connect / disconnect did to one room."""

    room_id: str
    changed: bool  # False: already in it (join) / not in it (leave)
    presence: bool  # an online / offline frame went out
    fanout: Fanout = Fanout()
    presence_failed: bool = False  # an offline was due but could not all be posted or queued


class ChatService:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        messages: MessageStore | None,
        limiter: RateLimiter | None,
        sender: Sender,
        memberships: MembershipStore | None = None,
        max_message_bytes: int = 4096,
        max_rooms: int = 50,
        fanout: FanoutQueue | None = None,
        shard_size: int = 1,
        typing_max_room: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connections = connections
        self.messages = messages
        self.limiter = limiter
        self.sender = sender
        self.memberships = memberships
        self.max_message_bytes = max_message_bytes
        self.max_rooms = max_rooms
        self.fanout = fanout  # None: every broadcast is posted here, whatever the room's size
        self.shard_size = shard_size
        self.typing_max_room = typing_max_room  # a room with more live connections gets no typing
        self._clock = clock
        self._ids = ids.UlidGenerator()

    # -- frames --------------------------------------------------------------------------------------

    def admit(self, connection_id: str) -> Connection | None:
        """The sender's live record after counting this frame against its user's rate limit.

        Raises ``rate_limited`` for the first refused frame of a window; :class:`Dropped` for the rest.
        None when the connection has no record (it cannot be counted, and is refused later).
        """
        connection = self.connections.get(connection_id)
        if connection is None:
            return None
        assert self.limiter is not None
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

    def _frame(self, connection_id: str, body: str | None, action: str) -> tuple[Connection, dict[str, Any]]:
        connection = self.admit(connection_id)
        frame = parse_frame(body)
        if frame.get("action") != action:
            raise unknown_action_error(frame)
        return _in_a_room(connection), frame

    def send_message(self, endpoint: str, connection_id: str, body: str | None) -> SendResult:
        """Store a chat message, acknowledge it to the sender, then fan it out to its room."""
        connection, frame = self._frame(connection_id, body, SEND_MESSAGE)
        room_id, text = validate_chat_message(
            frame, connection=_rooms_of(connection), max_bytes=self.max_message_bytes
        )
        given_id = client_msg_id(frame)
        self._deliverable(
            endpoint,
            message_object(
                room_id=room_id,
                user_id=connection.user_id,
                message=text,
                message_id=_AN_ID,
                timestamp=utc_timestamp(),
                name=connection.name,
                client_msg_id=given_id,
            ),
            room_id=room_id,
        )
        assert self.messages is not None
        saved = self.messages.save(
            room_id=room_id,
            user_id=connection.user_id,
            text=text,
            name=connection.name,
            client_msg_id=given_id,
        )
        message = saved.message
        _same_conversation(saved.duplicate, message.room_id, room_id, given_id)
        fanout = self._broadcast_message(endpoint, message, ack_to=connection_id, client_msg_id=given_id)
        return SendResult(message=message, duplicate=saved.duplicate, fanout=fanout)

    def _broadcast_message(
        self, endpoint: str, message: StoredMessage, *, ack_to: str | None, client_msg_id: str | None
    ) -> Fanout:
        """Fan a stored room message out; the sender's ack goes first when posted here, once every shard
        is queued when sharded: an ack always means the whole room will get it. Raises
        :class:`EnqueueFailed` when shards could not be queued (no ack then; the same client_msg_id
        again completes the fan-out)."""

        def ack() -> None:
            if ack_to is not None and client_msg_id is not None:
                frame = ack_frame(
                    client_msg_id=client_msg_id, message_id=message.message_id, room_id=message.room_id
                )
                self.sender.post(endpoint, ack_to, frame)

        return self.broadcast_room(
            endpoint,
            message.room_id,
            encode(message.as_frame()),
            message_id=message.message_id,
            before_posting=ack,
        )

    def send_direct(self, endpoint: str, connection_id: str, body: str | None) -> SendResult:
        """Store a direct message, acknowledge it, then deliver it to every live connection of the
        recipient and to the sender's other connections (``user_id-index``)."""
        connection, frame = self._frame(connection_id, body, SEND_DIRECT)
        to_user_id = user_id_field(frame, "to_user_id")
        if to_user_id == connection.user_id:
            raise FrameError(ErrorCode.INVALID_REQUEST, "a direct message must go to another user")
        text = message_text(frame, max_bytes=self.max_message_bytes)
        given_id = client_msg_id(frame)
        self._deliverable(
            endpoint,
            direct_object(
                from_user_id=connection.user_id,
                to_user_id=to_user_id,
                message=text,
                message_id=_AN_ID,
                timestamp=utc_timestamp(),
                name=connection.name,
                client_msg_id=given_id,
            ),
            room_id=None,
        )
        assert self.messages is not None
        saved = self.messages.save(
            room_id="",
            user_id=connection.user_id,
            text=text,
            name=connection.name,
            client_msg_id=given_id,
            to_user_id=to_user_id,
        )
        message = saved.message
        _same_conversation(
            saved.duplicate, message.room_id, conversation_key(connection.user_id, to_user_id), given_id
        )
        if given_id is not None:
            self.sender.post(
                endpoint,
                connection_id,
                direct_ack_frame(
                    client_msg_id=given_id, message_id=message.message_id, to_user_id=to_user_id
                ),
            )
        fanout = self._deliver_direct(endpoint, message, (to_user_id, connection.user_id), skip=connection_id)
        return SendResult(message=message, duplicate=saved.duplicate, fanout=fanout)

    def _deliver_direct(
        self, endpoint: str, message: StoredMessage, users: tuple[str, str], *, skip: str | None
    ) -> Fanout:
        """Post a direct message to every live connection of both users (``user_id-index``) but ``skip``."""
        targets = [
            c for user in users for c in self.connections.user_connections(user) if c.connection_id != skip
        ]
        gone = _Gone()
        result = self.sender.broadcast(
            endpoint, (c.connection_id for c in targets), encode(message.as_frame()), on_gone=gone.add
        )
        by_id = {c.connection_id: c for c in targets}
        kept = 0
        offline: list[tuple[str, str, str | None]] = []
        for cid in gone.ids():
            target = by_id[cid]
            kept += not self._clean_up(cid, target.user_id, since=target.since, room=None, offline=offline)
        self._announce_offline(endpoint, offline)
        result = _with_kept(result, kept)
        return Fanout(recipients=len(targets), pages=2, broadcast=result)

    def publish(self, endpoint: str, request: PublishRequest) -> SendResult:
        """Store a message from a backend (a system sender, not rate limited: IAM is the gate) and fan it
        out like a sent one: to a room (sharded past the shard size) or to one user's connections. A
        repeated ``client_msg_id`` of the same sender fans the stored message out again (completing one
        whose shards could not all be queued)."""
        if request.to_user_id is not None:
            frame = direct_object(
                from_user_id=request.user_id,
                to_user_id=request.to_user_id,
                message=request.text,
                message_id=_AN_ID,
                timestamp=utc_timestamp(),
                name=request.name,
                client_msg_id=request.client_msg_id,
            )
        else:
            assert request.room_id is not None
            frame = message_object(
                room_id=request.room_id,
                user_id=request.user_id,
                message=request.text,
                message_id=_AN_ID,
                timestamp=utc_timestamp(),
                name=request.name,
                client_msg_id=request.client_msg_id,
            )
        self._deliverable(endpoint, frame, room_id=request.room_id)
        assert self.messages is not None
        saved = self.messages.save(
            room_id=request.room_id or "",
            user_id=request.user_id,
            text=request.text,
            name=request.name,
            client_msg_id=request.client_msg_id,
            to_user_id=request.to_user_id,
        )
        message = saved.message
        if request.to_user_id is not None:
            key = conversation_key(request.user_id, request.to_user_id)
            _same_conversation(saved.duplicate, message.room_id, key, request.client_msg_id)
            fanout = self._deliver_direct(endpoint, message, (request.to_user_id, request.user_id), skip=None)
        else:
            assert request.room_id is not None
            _same_conversation(saved.duplicate, message.room_id, request.room_id, request.client_msg_id)
            fanout = self._broadcast_message(endpoint, message, ack_to=None, client_msg_id=None)
        return SendResult(message=message, duplicate=saved.duplicate, fanout=fanout)

    def _deliverable(self, endpoint: str, frame: dict[str, Any], *, room_id: str | None) -> None:
        """Refuse (``message_too_large``), before it is stored, a message whose frame no post can carry
        (128 KiB), or, for a room when rooms are sharded, no shard job (the frame is escaped once more
        there): stored, it would fail on every fan-out, and sending it again could never help. JSON
        escapes control characters, quotes and backslashes, so a frame can be several times its text."""
        data = encode(frame)
        if len(data) > MAX_FRAME_BYTES:
            raise FrameError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"the message's frame would be {len(data):,} bytes (JSON escapes control characters, quotes "
                f"and backslashes); a post carries at most {MAX_FRAME_BYTES:,} bytes: shorten the message",
            )
        if room_id is None or self.fanout is None:
            return
        job = job_overhead(endpoint=endpoint, room_id=room_id, message_id=_AN_ID, data=data.decode("utf-8"))
        if job + ONE_MEMBER_BYTES > MAX_JOB_BYTES:
            raise FrameError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"the message's shard job would be {job:,} bytes (its frame escaped as ASCII); a job carries "
                f"at most {MAX_JOB_BYTES - ONE_MEMBER_BYTES:,} bytes before its members: shorten the message",
            )

    def get_history(self, endpoint: str, connection_id: str, body: str | None) -> HistoryResult:
        """Answer the sender with one page of a room's (or a direct conversation's) history."""
        connection, frame = self._frame(connection_id, body, GET_HISTORY)
        request = validate_history_request(
            frame, connection=_rooms_of(connection), user_id=connection.user_id
        )
        if request.with_user_id is not None:
            key = conversation_key(connection.user_id, request.with_user_id)
        else:
            assert request.room_id is not None
            key = request.room_id
        assert self.messages is not None
        page = self.messages.page(key, before=request.before, after=request.after, limit=request.limit)
        frames = [message.as_frame() for message in page.messages]
        data, sent = _fit(
            request.room_id,
            request.with_user_id,
            frames,
            page.has_more,
            newest_kept=request.after is None,
        )
        self.sender.post(endpoint, connection_id, data)
        return HistoryResult(page=page, sent=sent, has_more=page.has_more or sent < len(frames))

    def join(self, endpoint: str, connection_id: str, body: str | None) -> RoomResult:
        """Add a room to the connection (checked like a connect), answer ``joined``, and tell the room
        the user is online when this is their first connection in it."""
        connection, frame = self._frame(connection_id, body, JOIN)
        room_id = room_to_join(frame)
        if not connection.may_join(room_id):
            raise FrameError(ErrorCode.FORBIDDEN_ROOM, f'the token does not grant room "{room_id}"')
        outcome = self.connections.add_room(connection_id, room_id, max_rooms=self.max_rooms)
        if outcome is JoinOutcome.NO_RECORD:
            raise _in_a_room_error()
        if outcome is JoinOutcome.TOO_MANY:
            raise FrameError(
                ErrorCode.TOO_MANY_ROOMS,
                f"a connection may be in at most {self.max_rooms} rooms; leave one first",
            )
        # Already in it: written again (idempotent), which completes a join whose first attempt failed
        # after the record was updated.
        try:
            result = self._enter(endpoint, connection, room_id)
        except EnqueueFailed as error:
            # Undone, so that joining again announces online (the presence item would otherwise hold
            # this connection already, and a second join would tell the room nothing).
            self._undo_join(connection, room_id)
            self._take_back_online(endpoint, room_id, connection.user_id, connection.name, error)
            raise
        self.sender.post(endpoint, connection_id, room_frame("joined", room_id))
        return dataclasses.replace(result, changed=outcome is JoinOutcome.JOINED)

    def leave(self, endpoint: str, connection_id: str, body: str | None) -> RoomResult:
        """Take a room off the connection, answer ``left``, and tell the room the user is offline when
        this was their last connection in it. Leaving a room one is not in only answers ``left``."""
        connection, frame = self._frame(connection_id, body, LEAVE)
        room_id = room_to_join(frame)
        was_in = self.connections.remove_room(connection_id, room_id)
        # Removed even when the record did not list it (both conditional): completes a leave that failed
        # half way.
        result = self._depart(endpoint, room_id, connection.user_id, connection_id, name=connection.name)
        self.sender.post(endpoint, connection_id, room_frame("left", room_id))
        return dataclasses.replace(result, changed=was_in)

    def list_members(
        self, endpoint: str, connection_id: str, body: str | None
    ) -> list[tuple[str, str | None]]:
        """Answer the distinct users with a live connection in the room, each once (every page read)."""
        connection, frame = self._frame(connection_id, body, LIST_MEMBERS)
        room_id = requested_room(frame, connection=_rooms_of(connection))
        assert self.memberships is not None
        seen: dict[str, str | None] = {}
        for membership in self.memberships.room(room_id).live:
            if membership.user_id not in seen or seen[membership.user_id] is None:
                seen[membership.user_id] = membership.name
        members = list(seen.items())
        self.sender.post(endpoint, connection_id, members_frame(room_id=room_id, members=members))
        return members

    def typing(self, endpoint: str, connection_id: str, body: str | None) -> Fanout:
        """Tell the room's other users this one is typing: never stored, one per connection and room
        every 2 s (the rest are dropped silently), and never in a room of more than ``typing_max_room``
        live connections (dropped silently too: it is always posted here, never sharded)."""
        connection, frame = self._frame(connection_id, body, TYPING)
        room_id = requested_room(frame, connection=_rooms_of(connection))
        assert self.memberships is not None
        if not self.memberships.typing_allowed(room_id, connection.user_id, connection_id):
            raise Dropped
        data = typing_frame(room_id=room_id, user_id=connection.user_id, name=connection.name)
        return self.broadcast_room(
            endpoint, room_id, data, skip_user=connection.user_id, at_most=self.typing_max_room
        )

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

    # -- connections ---------------------------------------------------------------------------------

    def connect(
        self,
        endpoint: str,
        *,
        connection_id: str,
        room_id: str,
        user_id: str,
        name: str | None,
        granted_rooms: Iterable[str] | None,
    ) -> RoomResult:
        """Store a new connection in its first room (the connect URL's). Raises when a store fails,
        after removing what was written (the handshake is then refused)."""
        granted = tuple(sorted(granted_rooms)) if granted_rooms is not None else None
        connection = self.connections.put(
            connection_id=connection_id, room_id=room_id, user_id=user_id, name=name, granted_rooms=granted
        )
        try:
            return self._enter(endpoint, connection, room_id)
        except EnqueueFailed as error:
            # Refused like a failed write: the user connects again, and the room hears online then.
            self._undo_connect(connection)
            self._take_back_online(endpoint, room_id, user_id, name, error)
            raise
        except Exception:
            self._undo_connect(connection)
            raise

    def disconnect(self, endpoint: str, connection_id: str) -> list[RoomResult]:
        """Remove the connection's record and every membership it had, by exact key (a reconnect has a
        new connection id and is never touched); offline goes to each room the user has now left."""
        connection = self.connections.take(connection_id)
        if connection is None:
            return []
        # Every membership goes first: a room's announcement running out of time leaves none behind.
        # One that cannot be removed (its TTL will) stops neither the others nor their announcements; the
        # first such error is raised once they are done.
        rooms = sorted(connection.rooms)
        offline: list[bool] = []
        failure: Exception | None = None
        for room in rooms:
            try:
                offline.append(self._leave_room(room, connection.user_id, connection_id))
            except Exception as error:
                failure = failure or error
                offline.append(False)
        results = [
            self._announce_departure(endpoint, room, connection.user_id, connection.name, best_effort=True)
            if due
            else RoomResult(room_id=room, changed=True, presence=False)
            for room, due in zip(rooms, offline, strict=True)
        ]
        if failure is not None:
            raise failure
        return results

    # -- rooms and presence --------------------------------------------------------------------------

    def broadcast_room(
        self,
        endpoint: str,
        room_id: str,
        data: bytes,
        *,
        skip_connection: str | None = None,
        skip_user: str | None = None,
        message_id: str | None = None,
        before_posting: Callable[[], None] | None = None,
        at_most: int | None = None,
    ) -> Fanout:
        """Post ``data`` to every live membership of the room (one paginated Query), then remove the
        connections found gone and the memberships found expired.

        Past ``shard_size`` targets (with a fanout queue), shard jobs are queued instead and the fanout
        function posts them (:meth:`fan_out_shard`); ``before_posting`` runs before the first post here,
        or once every job is queued. Raises :class:`EnqueueFailed` when jobs could not all be queued
        (after the expired memberships are removed). With ``at_most``, a room of more live connections
        is neither read past that nor posted to: :class:`Dropped`."""
        assert self.memberships is not None
        room: RoomMemberships = self.memberships.room(room_id, stop_past=at_most)
        if room.truncated:
            raise Dropped
        targets = [m for m in room.live if m.connection_id != skip_connection and m.user_id != skip_user]
        offline: list[tuple[str, str, str | None]] = []
        shards = 0
        result = _NO_BROADCAST
        failure: EnqueueFailed | None = None
        if self.fanout is not None and len(targets) > self.shard_size:
            try:
                shards = self._queue_shards(endpoint, room_id, data, targets, message_id)
            except EnqueueFailed as error:
                failure = error
            else:
                if before_posting is not None:
                    before_posting()
        else:
            if before_posting is not None:
                before_posting()
            result = self._post_members(endpoint, room_id, data, targets, offline)
        for expired in room.expired:  # API Gateway closed it (2 h at most); its $disconnect was missed
            self._clean_up(expired.connection_id, expired.user_id, since=0, room=room_id, offline=offline)
        # Announced once every gone one is removed, so none of them is posted to again.
        self._announce_offline(endpoint, offline)
        if failure is not None:
            raise failure
        return Fanout(
            recipients=len(targets),
            pages=room.pages,
            expired_skipped=room.expired_skipped,
            broadcast=result,
            shards=shards,
        )

    def fan_out_shard(self, job: ShardJob) -> Fanout:
        """Post one shard job (the fanout function) with the same rules as a broadcast posted here: a
        connection gone (410) is removed, with every membership it had and the offline it implies; 429
        and 5xx are retried and never removed. A member whose post failed counts in ``failed``, one not
        posted because the invocation's deadline was near (``SHARD_RESERVE_SECONDS``) in ``deferred``: the
        caller lets SQS deliver the whole job again (members who got it drop the repeat by message_id)."""
        offline: list[tuple[str, str, str | None]] = []
        targets = [
            Membership(
                room_id=job.room_id, connection_id=m.connection_id, user_id=m.user_id, ttl=0, since=m.since
            )
            for m in job.members
        ]
        result = self._post_members(
            job.endpoint, job.room_id, job.data.encode("utf-8"), targets, offline, may_start=_time_for_a_post
        )
        self._announce_offline(job.endpoint, offline)
        return Fanout(recipients=len(targets), broadcast=result)

    def _post_members(
        self,
        endpoint: str,
        room_id: str,
        data: bytes,
        targets: list[Membership],
        offline: list[tuple[str, str, str | None]],
        *,
        may_start: Callable[[], bool] | None = None,
    ) -> BroadcastResult:
        gone = _Gone()
        result = self.sender.broadcast(
            endpoint, (m.connection_id for m in targets), data, on_gone=gone.add, may_start=may_start
        )
        by_id = {m.connection_id: m for m in targets}
        kept = 0
        for cid in gone.ids():
            found = by_id[cid]
            kept += not self._clean_up(cid, found.user_id, since=found.since, room=room_id, offline=offline)
        return _with_kept(result, kept)

    def _queue_shards(
        self, endpoint: str, room_id: str, data: bytes, targets: list[Membership], message_id: str | None
    ) -> int:
        assert self.fanout is not None
        jobs = plan_shards(
            endpoint=endpoint,
            room_id=room_id,
            message_id=message_id or self._ids.new(),
            data=data.decode("utf-8"),
            members=(ShardMember(m.connection_id, m.user_id, m.since) for m in targets),
            shard_size=self.shard_size,
        )
        try:
            return self.fanout.enqueue(encode_job(job) for job in jobs)
        except JobTooLarge as error:  # checked before storing (_deliverable); a domain error all the same
            raise FrameError(
                ErrorCode.MESSAGE_TOO_LARGE, f"the frame does not fit a shard job: {error}"
            ) from None

    def _enter(self, endpoint: str, connection: Connection, room_id: str) -> RoomResult:
        assert self.memberships is not None
        self.memberships.add(
            Membership(
                room_id=room_id,
                connection_id=connection.connection_id,
                user_id=connection.user_id,
                ttl=connection.ttl,
                name=connection.name,
                since=connection.since,
            )
        )
        first = self.memberships.enter(
            room_id, connection.user_id, connection.connection_id, name=connection.name
        )
        if not first:
            return RoomResult(room_id=room_id, changed=True, presence=False)
        data = presence_frame(room_id=room_id, user_id=connection.user_id, name=connection.name, online=True)
        # The joining connection is answered "joined" (or is still in its $connect, where a post is a 410).
        fanout = self.broadcast_room(endpoint, room_id, data, skip_connection=connection.connection_id)
        return RoomResult(room_id=room_id, changed=True, presence=True, fanout=fanout)

    def _depart(
        self, endpoint: str, room_id: str, user_id: str, connection_id: str, *, name: str | None
    ) -> RoomResult:
        if not self._leave_room(room_id, user_id, connection_id):
            return RoomResult(room_id=room_id, changed=True, presence=False)
        return self._announce_departure(endpoint, room_id, user_id, name, best_effort=False)

    def _leave_room(self, room_id: str, user_id: str, connection_id: str) -> bool:
        """Remove one membership; True when it was the user's last connection there (offline is due)."""
        assert self.memberships is not None
        self.memberships.remove(room_id, user_id, connection_id)
        return self.memberships.depart(room_id, user_id, connection_id)

    def _announce_departure(
        self, endpoint: str, room_id: str, user_id: str, name: str | None, *, best_effort: bool
    ) -> RoomResult:
        """Broadcast offline. The user is gone whatever happens here, so a failure to queue its shards
        (or, ``best_effort``, any failure) is logged and reported in ``presence_failed``, not raised."""
        data = presence_frame(room_id=room_id, user_id=user_id, name=name, online=False)
        try:
            fanout = self.broadcast_room(endpoint, room_id, data)
        except Exception as error:
            if not (best_effort or isinstance(error, EnqueueFailed)):
                raise
            logger.exception("could not announce offline", extra={"room_id": room_id})
            return RoomResult(room_id=room_id, changed=True, presence=False, presence_failed=True)
        return RoomResult(room_id=room_id, changed=True, presence=True, fanout=fanout)

    def _take_back_online(
        self, endpoint: str, room_id: str, user_id: str, name: str | None, error: EnqueueFailed
    ) -> None:
        """Some shards of an online that is undone were queued: those members hear offline after it."""
        if error.enqueued:
            self._announce_offline(endpoint, [(room_id, user_id, name)])

    def _undo_join(self, connection: Connection, room_id: str) -> None:
        cid, user_id = connection.connection_id, connection.user_id
        for undo in (
            lambda: self.connections.remove_room(cid, room_id),
            lambda: self.memberships and self.memberships.remove(room_id, user_id, cid),
            lambda: self.memberships and self.memberships.depart(room_id, user_id, cid),
        ):
            with contextlib.suppress(Exception):  # the enqueue that failed is what is reported
                undo()

    def _clean_up(
        self,
        connection_id: str,
        user_id: str,
        *,
        since: int,
        room: str | None,
        offline: list[tuple[str, str, str | None]],
    ) -> bool:
        """Remove a connection a broadcast found gone: its record and every membership it had (``room``,
        where it was found, even when the record is already gone); the users it leaves offline are added
        to ``offline``. False when that failed: the message reached everyone else, which must not turn
        into an error, and the next broadcast (or the TTL) removes it."""
        if since and self._clock() - since < CONNECT_GRACE_SECONDS:
            return True
        assert self.memberships is not None
        try:
            connection = self.connections.take(connection_id)
            rooms = set(connection.rooms) if connection is not None else set()
            if room is not None:
                rooms.add(room)
            name = connection.name if connection is not None else None
            for each in sorted(rooms):
                self.memberships.remove(each, user_id, connection_id)
                if self.memberships.depart(each, user_id, connection_id):
                    offline.append((each, user_id, name))
        except Exception:
            logger.exception("could not delete gone connection", extra={"gone_connection_id": connection_id})
            return False
        return True

    def _announce_offline(self, endpoint: str, offline: list[tuple[str, str, str | None]]) -> None:
        for room_id, user_id, name in offline:
            data = presence_frame(room_id=room_id, user_id=user_id, name=name, online=False)
            try:
                self.broadcast_room(endpoint, room_id, data)
            except Exception:  # presence is best effort here: the message itself went out
                logger.exception("could not announce offline", extra={"room_id": room_id})

    def _undo_connect(self, connection: Connection) -> None:
        for undo in (
            lambda: self.connections.delete(connection.connection_id),
            lambda: (
                self.memberships
                and self.memberships.remove(connection.room_id, connection.user_id, connection.connection_id)
            ),
            lambda: (
                self.memberships
                and self.memberships.depart(connection.room_id, connection.user_id, connection.connection_id)
            ),
        ):
            with contextlib.suppress(Exception):  # the write that failed is what is reported
                undo()


def _time_for_a_post() -> bool:
    left = deadline.remaining()
    return left is None or left > SHARD_RESERVE_SECONDS


def _with_kept(result: BroadcastResult, kept: int) -> BroadcastResult:
    """The broadcast's counts with ``kept`` of its gone connections moved to gone_kept (removal failed)."""
    return dataclasses.replace(result, gone=result.gone - kept, gone_kept=result.gone_kept + kept)


class _Gone:
    """Connection ids a broadcast found gone (collected from its threads)."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._lock = threading.Lock()

    def add(self, connection_id: str) -> None:
        with self._lock:
            self._ids.append(connection_id)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)


class Dropped(Exception):
    """The rate limit dropped the frame: answer nothing."""


def _in_a_room_error() -> FrameError:
    return FrameError(ErrorCode.FORBIDDEN_ROOM, "this connection is not in any room; reconnect")


def _in_a_room(connection: Connection | None) -> Connection:
    if connection is None:
        raise _in_a_room_error()
    return connection


def _rooms_of(connection: Connection) -> RoomsOf:
    return RoomsOf(first=connection.room_id, rooms=connection.rooms)


def _fit(
    room_id: str | None,
    with_user_id: str | None,
    frames: list[dict[str, Any]],
    has_more: bool,
    *,
    newest_kept: bool,
) -> tuple[bytes, int]:
    """The history frame, without the messages farthest from the cursor that do not fit in 128 KiB."""
    empty = history_frame(room_id=room_id, with_user_id=with_user_id, messages=[], has_more=True)
    budget = MAX_FRAME_BYTES - len(empty)
    order = list(reversed(frames)) if newest_kept else list(frames)
    kept = 0
    for frame in order:
        budget -= len(encode(frame)) + 1  # and its comma
        if budget < 0:
            break
        kept += 1
    chosen = frames[len(frames) - kept :] if newest_kept else frames[:kept]
    data = history_frame(
        room_id=room_id, with_user_id=with_user_id, messages=chosen, has_more=has_more or kept < len(frames)
    )
    return data, kept


def _same_conversation(duplicate: bool, stored_in: str, asked_for: str, given_id: str | None) -> None:
    """A repeated client_msg_id must repeat the same conversation: acking or re-broadcasting the first
    message would otherwise post it where this send never named."""
    if duplicate and stored_in != asked_for:
        raise FrameError(
            ErrorCode.INVALID_REQUEST,
            f'client_msg_id "{given_id}" was already used for another conversation; use a new one',
        )
