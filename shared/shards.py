"""Shard jobs: a large room's broadcast cut into slices one fanout invocation posts (docs/fanout.md).

Pure: no I/O. A job is one SQS message body, JSON, ASCII only (``ensure_ascii``: every character SQS
accepts, and its size in bytes is its length)::

    {"v": 1, "endpoint": "https://.../prod", "room_id": "general", "message_id": "01J...",
     "data": "<the frame, as text>", "members": [["<connection id>", "<user id>", <since>], ...]}

:func:`plan_shards` puts every member it is given in exactly one job, in order, each job holding at most
``shard_size`` members and at most ``max_bytes`` bytes of body: a job is cut by count or by size,
whichever comes first. :func:`decode_job` refuses a body that is not such a job with :class:`BadJob`,
which names the bad field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

JOB_VERSION = 1
# SQS takes at most 256 KiB per message and per SendMessageBatch; a job stays well under it so one batch
# call can carry it with room to spare, whatever the ids' lengths.
MAX_JOB_BYTES = 200 * 1024
# Room kept for one member in a job: a connection id, a user id of 128 characters (12 bytes each at most,
# escaped as a surrogate pair) and its since.
ONE_MEMBER_BYTES = 2048


class JobTooLarge(ValueError):
    """A frame (or a member) that no shard job can carry: sending it again cannot help."""


class BadJob(ValueError):
    """A shard job body that is not a job (the message names the field)."""


class ShardMember(NamedTuple):
    """One connection of the room: what a post needs, and what removing it after a 410 needs."""

    connection_id: str
    user_id: str
    since: int  # epoch seconds of its $connect (a 410 this soon may be a $connect still running)


@dataclass(frozen=True, kw_only=True)
class ShardJob:
    endpoint: str  # the management API base URL the members' connections are on
    room_id: str
    message_id: str  # of the message (or frame) posted: for logs and clients' dedupe
    data: str  # the encoded frame, as text
    members: tuple[ShardMember, ...]


def encode_job(job: ShardJob) -> str:
    return _encode(job.endpoint, job.room_id, job.message_id, job.data, [list(m) for m in job.members])


def _encode(endpoint: str, room_id: str, message_id: str, data: str, members: list[Any]) -> str:
    body = {
        "v": JOB_VERSION,
        "endpoint": endpoint,
        "room_id": room_id,
        "message_id": message_id,
        "data": data,
        "members": members,
    }
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"))


def plan_shards(
    *,
    endpoint: str,
    room_id: str,
    message_id: str,
    data: str,
    members: Iterable[ShardMember],
    shard_size: int,
    max_bytes: int = MAX_JOB_BYTES,
) -> Iterator[ShardJob]:
    """The jobs that post ``data`` to ``members``, one at a time as ``members`` is read (the caller's
    list of members is what is held; each job's body is built only when it is yielded).
    :class:`JobTooLarge` when the frame, or a member, cannot fit in a job."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    empty = job_overhead(endpoint=endpoint, room_id=room_id, message_id=message_id, data=data)
    if empty >= max_bytes:
        raise JobTooLarge(f"a job for this frame takes {empty} bytes before any member; at most {max_bytes}")
    batch: list[ShardMember] = []
    size = empty
    for member in members:
        # Its entry, and the comma before it (the first has none: one byte of slack).
        cost = len(json.dumps(list(member), ensure_ascii=True, separators=(",", ":"))) + 1
        if empty + cost > max_bytes:
            raise JobTooLarge(f"member {member.connection_id!r} alone does not fit in a {max_bytes}-byte job")
        if batch and (len(batch) >= shard_size or size + cost > max_bytes):
            yield _job(endpoint, room_id, message_id, data, batch)
            batch, size = [], empty
        batch.append(member)
        size += cost
    if batch:
        yield _job(endpoint, room_id, message_id, data, batch)


def job_overhead(*, endpoint: str, room_id: str, message_id: str, data: str) -> int:
    """The bytes a job for ``data`` takes before any member (``data`` escaped once more, as ASCII)."""
    return len(_encode(endpoint, room_id, message_id, data, []))


def _job(endpoint: str, room_id: str, message_id: str, data: str, members: list[ShardMember]) -> ShardJob:
    return ShardJob(
        endpoint=endpoint, room_id=room_id, message_id=message_id, data=data, members=tuple(members)
    )


def decode_job(body: str) -> ShardJob:
    """The job in an SQS message body; :class:`BadJob` naming the first bad field."""
    try:
        raw = json.loads(body)
    except (TypeError, ValueError) as error:
        raise BadJob(f"shard job is not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise BadJob("shard job must be a JSON object")
    if raw.get("v") != JOB_VERSION:
        raise BadJob(f'shard job field "v" must be {JOB_VERSION}, got {raw.get("v")!r}')
    endpoint = _text(raw, "endpoint")
    if not endpoint.startswith(("https://", "http://")):
        raise BadJob(f'shard job field "endpoint" must be an http(s) URL, got {endpoint!r}')
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise BadJob('shard job field "members" must be a non-empty list')
    parsed = []
    for i, member in enumerate(members):
        if (
            not isinstance(member, list)
            or len(member) != 3
            or not all(isinstance(part, str) and part for part in member[:2])
            or not isinstance(member[2], int)
            or isinstance(member[2], bool)
        ):
            raise BadJob(f'shard job field "members[{i}]" must be [connection_id, user_id, since]')
        parsed.append(ShardMember(member[0], member[1], member[2]))
    return ShardJob(
        endpoint=endpoint,
        room_id=_text(raw, "room_id"),
        message_id=_text(raw, "message_id"),
        data=_text(raw, "data"),
        members=tuple(parsed),
    )


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise BadJob(f'shard job field "{key}" must be a non-empty string')
    return value


class ShardIncomplete(Exception):
    """A shard job was posted but some posts failed (after retries): SQS is to deliver it again."""


def retry_delay(receive_count: int) -> int:
    """Seconds before a failed job is received again: 2, 4, 8, ... (at most 60) by its receives so far,
    instead of the queue's visibility timeout (six times the fanout function's)."""
    return min(60, 2 ** max(1, receive_count))
