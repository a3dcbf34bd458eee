"""One line of figures per reliability family, printed by conftest.py at the end of the run.

Tests record what they observed *before* they assert, so a failing run still reports true figures.
"""

from __future__ import annotations

import threading
from collections import Counter

# family -> format of its line; the keys of each family's counter fill the format.
FORMATS: dict[str, str] = {
    "auth": "{attacks} attacks, {refused} refused, {records_written} records written, "
    "{token_leaks} token leaks in {log_lines} log lines",
    "claim_shapes": "{tried} well-signed tokens with claims of the wrong type, {refused} refused (401), "
    "{stored} records written",
    "jwks_rotation": "{tried} connects with a key rotated out of the JWKS, {refused} refused, "
    "{stored} stored; {unknown_kids} made-up kids, {fetches} JWKS fetches in all",
    "connect_deadline": "{tried} connects against a slow DynamoDB or JWKS, {refused} refused within the "
    "deadline, {stored} records left, slowest answer {slowest}",
    "subprotocol": "{attacks} attacks, {refused} refused, {records_written} records written, "
    "{bearer_echoed} bearer entries echoed, {token_leaks} token leaks",
    "fuzz": "{frames} frames, {connects} query strings, {uncaught} uncaught exceptions, "
    "{non_contract} non-contract answers, {invalid_broadcasts} invalid broadcasts, "
    "{valid_broadcasts} valid broadcasts checked",
    "rate_limit": "{sent} messages sent, {accepted} accepted, {rate_limited} rate_limited, "
    "{refused_broadcasts} refused ones broadcast, {refilled} accepted after refill",
    "per_user_flood": "{tried} frames tried by one user, {refused} refused, {told} rate_limited answers",
    "faults": "{scenarios} scenarios, {reachable_delivered}/{reachable} reachable recipients delivered, "
    "{live_deleted} live connections deleted, {half_stored} half-stored connects, "
    "{uncounted} failures missing from metrics/logs; {stack}",
    "missed_disconnect": "{dropped} $disconnects dropped, {removed_by_410} removed by the 410 path, "
    "{skipped_by_ttl} skipped by TTL, {reaped} reaped, "
    "{posted_to_dead} posts to dead connections after their 410/TTL",
    "soak": "{clients} clients x {messages} messages: {lost} lost, {duplicated} duplicated after dedupe "
    "({resumes}; {burst_timeouts} integration timeouts, {burst_workers} worker processes at the end); "
    "{steady}",
    "storm": "{clients} clients closed at once, {left} records left after {waited}",
    "head-of-line": "{bursts} bursts of {burst} frames from one client: another room's echo p99 "
    "{idle_p99} idle, {loaded_p99} flooded ({ratio}, bound 3x + 250 ms; medians {medians}); "
    "{big_frames} frames of 30 KB: gateway RSS {rss}; "
    "{half_open_left} of {half_open} half-sent handshakes still open after the handshake timeout",
    "slow-reader": "{tried} frames tried to a reader that stopped reading: {delivered} delivered, "
    "{duplicated} duplicated, closed {close_code}; {live_delivered}/{tried} to a live member, "
    "slowest post {slowest}",
}
# Free-text fields (set by note()): "n/a" until set; a missing counter reads 0.
TEXTS = {"steady", "waited", "burst_workers", "burst_timeouts", "stack", "idle_p99", "loaded_p99"}
TEXTS |= {"resumes", "ratio", "medians", "rss", "half_open_left", "slowest", "close_code"}

_lock = threading.Lock()
_counters: dict[str, Counter[str]] = {}
_texts: dict[str, dict[str, str]] = {}


def record(family: str, **counts: int) -> None:
    """Add counts to a family's line (a family appears once something is recorded for it)."""
    with _lock:
        _counters.setdefault(family, Counter()).update(counts)


def note(family: str, **texts: str) -> None:
    with _lock:
        _counters.setdefault(family, Counter())
        _texts.setdefault(family, {}).update(texts)


class _Defaults(dict[str, object]):
    def __missing__(self, key: str) -> object:
        return "n/a" if key in TEXTS else 0


def lines() -> list[str]:
    with _lock:
        values = {
            family: _Defaults({**counter, **_texts.get(family, {})}) for family, counter in _counters.items()
        }
        return [f"{f}: {FORMATS.get(f, '').format_map(v)}".rstrip(": ") for f, v in values.items()]
