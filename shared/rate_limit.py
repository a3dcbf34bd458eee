"""Per-connection message rate limit: a token bucket kept on the connection's own record.

Each accepted message takes one token; tokens refill at ``rate`` per second up to ``burst``. The bucket
lives in DynamoDB (Lambda has no memory shared between invocations), updated with an optimistic
condition on a version counter, so concurrent invocations for one connection cannot both spend the same
token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class TokenBucket:
    rate: float  # tokens per second; 0 disables the limit
    burst: int

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def available(self, tokens: float | None, updated_ms: int | None, now_ms: int) -> float:
        """Tokens in the bucket at ``now_ms``; a connection that never sent has a full bucket.

        Times are whole milliseconds, exactly as stored, so a refill never loses a rounding error.
        """
        if tokens is None or updated_ms is None:
            return float(self.burst)
        return min(float(self.burst), tokens + max(0, now_ms - updated_ms) * self.rate / 1000)
