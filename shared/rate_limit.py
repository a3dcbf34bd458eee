"""Per-user rate limit: every frame a user sends, from any of their connections, spends from one bucket.

A token bucket (``rate`` a second, bursts of ``burst``) kept as GCRA's single number, the "theoretical
arrival time" ``tat``: a frame at ``now`` is allowed when ``max(tat, now) + T - now <= burst * T``
(``T = 1/rate``), and then ``tat`` becomes ``max(tat, now) + T``. That makes each frame one conditional
``UpdateItem`` with no read before it (Lambda has no memory shared between invocations, and concurrent
invocations must not both spend the same token). The item lives in the messages table under
``("rate#" + user_id, "bucket")`` with a ``ttl`` a minute past the moment its bucket is full again.

A refused frame is dropped. Only the first refusal of each ``notice_interval_s`` (per user) is told
``rate_limited``: answering every frame of a flood would cost as much as serving it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.messages import RATE_KEY_PREFIX  # the messages table's keyspaces are listed there

BUCKET_RANGE_KEY = "bucket"
_ATTEMPTS = 4


@dataclass(frozen=True, kw_only=True)
class TokenBucket:
    rate: float  # tokens per second; 0 disables the limit
    burst: int

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class Verdict(Enum):
    ALLOWED = "allowed"
    REFUSED_NOTIFY = "refused_notify"  # the first refusal of its window: tell the sender
    REFUSED_SILENT = "refused_silent"


class RateLimitUnavailable(Exception):
    """DynamoDB could not be reached to count the frame."""


class RateLimiter:
    def __init__(
        self,
        table_name: str,
        *,
        client: Any,
        bucket: TokenBucket,
        clock: Callable[[], float] = time.time,
        notice_interval_s: float = 1.0,
    ) -> None:
        self.table_name = table_name
        self.bucket = bucket
        self._client = client
        self._clock = clock
        self.notice_interval_us = int(notice_interval_s * 1_000_000)

    def take(self, user_id: str) -> Verdict:
        """Count one frame of ``user_id``."""
        if not self.bucket.enabled:
            return Verdict.ALLOWED
        try:
            return self._take(user_id)
        except (ClientError, BotoCoreError) as error:
            raise RateLimitUnavailable(f"could not count the frame: {error}") from error

    def _take(self, user_id: str) -> Verdict:
        interval = max(1, round(1_000_000 / self.bucket.rate))  # T, in microseconds
        tolerance = (self.bucket.burst - 1) * interval
        key = {"room_id": {"S": RATE_KEY_PREFIX + user_id}, "message_id": {"S": BUCKET_RANGE_KEY}}
        old: dict[str, Any] | None = None
        for _ in range(_ATTEMPTS):
            now = int(self._clock() * 1_000_000)
            ttl = {"N": str(math.ceil((now + tolerance + interval) / 1_000_000) + 60)}
            # The bucket has been full since tat (or never used): the frame starts it again at now.
            old = self._update(
                key,
                "SET tat = :next, #ttl = :ttl",
                "attribute_not_exists(tat) OR tat < :now",
                {":next": {"N": str(now + interval)}, ":now": {"N": str(now)}, ":ttl": ttl},
            )
            if old is None:
                return Verdict.ALLOWED
            tat = int(old.get("tat", {"N": "0"})["N"])
            if tat > now + tolerance:
                return self._refused(key, old, now)
            # Tokens are left: spend one unless another frame spent it in between.
            old = self._update(
                key,
                "SET tat = tat + :interval, #ttl = :ttl",
                "tat BETWEEN :now AND :limit",
                {
                    ":interval": {"N": str(interval)},
                    ":now": {"N": str(now)},
                    ":limit": {"N": str(now + tolerance)},
                    ":ttl": ttl,
                },
            )
            if old is None:
                return Verdict.ALLOWED
        return self._refused(key, old, int(self._clock() * 1_000_000))

    def _refused(self, key: dict[str, Any], old: dict[str, Any] | None, now: int) -> Verdict:
        notified = old.get("notified") if old else None
        if notified is not None and int(notified["N"]) > now - self.notice_interval_us:
            return Verdict.REFUSED_SILENT
        told = self._update(
            key,
            "SET notified = :now",
            "attribute_not_exists(notified) OR notified <= :cut",
            {":now": {"N": str(now)}, ":cut": {"N": str(now - self.notice_interval_us)}},
            names=False,
        )
        return Verdict.REFUSED_NOTIFY if told is None else Verdict.REFUSED_SILENT

    def _update(
        self, key: dict[str, Any], update: str, condition: str, values: dict[str, Any], *, names: bool = True
    ) -> dict[str, Any] | None:
        """Apply a conditional update; None when it was applied, else the item as it was."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": key,
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if names:
            params["ExpressionAttributeNames"] = {"#ttl": "ttl"}
        try:
            self._client.update_item(**params)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            # DynamoDB returns the item as it was (ALL_OLD); an item deleted in between reads as empty.
            item: dict[str, Any] = error.response.get("Item") or {}
            return item
        return None
