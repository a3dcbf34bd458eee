"""Building a function's chat service from its environment, once per execution environment (cold start).

Each handler calls :func:`chat_service` at import, so a bad variable fails the init naming it, and the
boto3 clients are made during Lambda's init phase instead of on the first frame.
"""

from __future__ import annotations

from shared.chat import ChatService
from shared.config import (
    FanoutConfig,
    MessageStoreConfig,
    RateLimitConfig,
    RoomsConfig,
    TableConfig,
    callback_url_from_env,
    messages_table_name,
    shard_size_from_env,
)
from shared.connections import ConnectionStore, dynamodb_client
from shared.fanout_queue import FanoutQueue, sqs_client
from shared.messages import MessageStore
from shared.rate_limit import RateLimiter, TokenBucket
from shared.rooms import MembershipStore
from shared.sender import Sender


def chat_service(
    *,
    pool_size: int = 1,
    stores_messages: bool = True,
    rate_limited: bool = True,
    uses_rooms: bool = True,
    fans_out: bool = False,
    bounds_typing: bool = False,
    max_rooms: int = 50,
    max_message_bytes: int = 4096,
    connect_timeout: float = 2,
    read_timeout: float = 3,
) -> ChatService:
    """The service with its stores and sender. ``pool_size``: posts (and DynamoDB calls) in flight at once.

    ``stores_messages`` False leaves out the message store (``$default`` only keeps rate-limit buckets there,
    and is given neither the retention setting nor access to messages); ``rate_limited`` False leaves out
    the rate limit ($connect, $disconnect); ``uses_rooms`` False the membership table. ``fans_out`` True
    reads ``FanoutConfig``: with a queue, a broadcast past its shard size is queued as shard jobs (one SQS
    client, from the process's one botocore session, like the DynamoDB client's). ``bounds_typing`` True
    reads ``FANOUT_SHARD_SIZE`` alone: typing, never sharded, is dropped in a room of more live
    connections than that (unset: no bound). A broadcast removes
    the connections it finds gone (410); a reply to one sender leaves that to ``$disconnect``."""
    client = dynamodb_client(pool_size=pool_size, connect_timeout=connect_timeout, read_timeout=read_timeout)
    connections = ConnectionStore(TableConfig.from_env().table_name, client=client)
    memberships = None
    if uses_rooms:
        memberships = MembershipStore(RoomsConfig.from_env().table_name, client=client)
    messages = None
    if stores_messages:
        store_config = MessageStoreConfig.from_env()
        messages = MessageStore(
            store_config.table_name, client=client, retention_days=store_config.retention_days
        )
    limiter = None
    if rate_limited:
        limits = RateLimitConfig.from_env()
        limiter = RateLimiter(
            messages_table_name(),
            client=client,
            bucket=TokenBucket(rate=limits.per_second, burst=limits.burst),
        )
    sender = Sender(pool_size=pool_size, on_gone=_keep)
    callback_url = callback_url_from_env()
    if callback_url:
        sender.client(callback_url)  # build the management client during init, not on the first frame
    fanout = None
    shard_size = 1  # unused without a queue
    if fans_out:
        fanout_config = FanoutConfig.from_env()
        if fanout_config.queue_url is not None and fanout_config.shard_size is not None:
            queue_client = sqs_client(connect_timeout=connect_timeout, read_timeout=read_timeout)
            fanout = FanoutQueue(fanout_config.queue_url, client=queue_client)
            shard_size = fanout_config.shard_size
    typing_max_room = shard_size_from_env() if bounds_typing else None
    return ChatService(
        connections=connections,
        messages=messages,
        limiter=limiter,
        sender=sender,
        memberships=memberships,
        max_message_bytes=max_message_bytes,
        max_rooms=max_rooms,
        fanout=fanout,
        shard_size=shard_size,
        typing_max_room=typing_max_room,
    )


def _keep(connection_id: str) -> None:
    """A gone connection found by a reply: its record is left to $disconnect and its TTL."""
