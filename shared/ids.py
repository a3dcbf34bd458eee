"""Message ids: ULIDs (https://github.com/ulid/spec), 26 characters of Crockford base32.

The first 10 characters are the millisecond timestamp, the last 16 are 80 random bits, so ids are fixed
width and sort lexicographically in time order. Within one process ids are strictly increasing: an id
made in the same millisecond as (or, after the clock stepped back, earlier than) the previous one is
that one plus one, as the spec's monotonic mode says. Ids made by different processes in the same
millisecond are ordered by their random part; the conditional write that stores a message refuses a
collision, so two messages never share an id.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 26
MAX_VALUE = (1 << 128) - 1
_RANDOM_BITS = 80
# 26 base32 characters hold 130 bits: a ULID's first character is 0-7.
ULID_PATTERN = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
MIN_ID = "0" * LENGTH
MAX_ID = "7" + "Z" * (LENGTH - 1)


def encode(value: int) -> str:
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"a ULID holds 128 bits, got {value}")
    chars = []
    for _ in range(LENGTH):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def decode(text: str) -> int:
    if not is_ulid(text):
        raise ValueError(f"not a ULID: {text!r}")
    value = 0
    for char in text:
        value = value * 32 + ALPHABET.index(char)
    return value


def is_ulid(value: object) -> bool:
    return isinstance(value, str) and ULID_PATTERN.fullmatch(value) is not None


def timestamp_ms(text: str) -> int:
    return decode(text) >> _RANDOM_BITS


def lowest_at(ms: int) -> str:
    """The smallest id of millisecond ``ms``: every id made at ``ms`` or later sorts at or above it."""
    return encode(max(0, ms) << _RANDOM_BITS)


def successor(text: str) -> str | None:
    """The next id in sort order (None after the last one): ``> x`` is ``>= successor(x)``."""
    value = decode(text)
    return encode(value + 1) if value < MAX_VALUE else None


def predecessor(text: str) -> str | None:
    """The previous id in sort order (None before the first one): ``< x`` is ``<= predecessor(x)``."""
    value = decode(text)
    return encode(value - 1) if value > 0 else None


class UlidGenerator:
    """Monotonic ULIDs for one process; thread-safe (the fan-out runs in threads)."""

    def __init__(
        self,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        random_bits: Callable[[], int] = lambda: int.from_bytes(os.urandom(10), "big"),
    ) -> None:
        self._clock_ms = clock_ms
        self._random_bits = random_bits
        self._last = -1
        self._lock = threading.Lock()

    def new(self) -> str:
        with self._lock:
            candidate = (self._clock_ms() << _RANDOM_BITS) | (self._random_bits() & ((1 << _RANDOM_BITS) - 1))
            value = candidate if candidate > self._last else self._last + 1
            if value > MAX_VALUE:  # the year 10889, or a clock gone mad
                raise OverflowError("no ULID is left after the last one")
            self._last = value
            return encode(value)
