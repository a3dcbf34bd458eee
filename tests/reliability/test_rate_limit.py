"""Per-user rate limit (RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST): every frame of every connection of the
user counts; the first refusal of each second is told ``rate_limited``, the rest are dropped. The limiter's
clock is injected (``RateLimiter(clock=...)``): refill is counted in simulated seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from local_stack.testing import FakeContext, FakeManagementApi
from shared.rate_limit import RateLimiter, TokenBucket, Verdict
from tests.conftest import load_function
from tests.reliability import summary
from tests.support.events import message_event

SENDER, OTHER, WITNESS = "SENDERxxxxxxxx0=", "OTHERxxxxxxxxx0=", "WITNESSxxxxxxx0="


class Clock:
    """Simulated seconds from a whole second: exact in binary and in the store's milliseconds (the rounding
    test below starts elsewhere)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time())) if start is None else start

    def __call__(self) -> float:
        return self.now


class AtomicClient:
    """Each DynamoDB call made whole, as the real service makes it: moto checks a ConditionExpression and
    writes the item without a lock, so threads racing through moto could double-spend where DynamoDB can't."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name == "get_paginator":
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


@dataclass
class Room:
    """SENDER and OTHER (alice) and WITNESS (bob) in "general"; :meth:`load` a function with a limit."""

    api: FakeManagementApi
    monkeypatch: pytest.MonkeyPatch
    clock: Clock

    def load(self, rate: str | None = None, burst: str | None = None, name: str = "send_message") -> Any:
        """The function with that limit (None: the default, 10 a second in bursts of 20), its limiter on
        ``clock`` and atomic."""
        for variable, value in (("RATE_LIMIT_PER_SECOND", rate), ("RATE_LIMIT_BURST", burst)):
            if value is None:
                self.monkeypatch.delenv(variable, raising=False)
            else:
                self.monkeypatch.setenv(variable, value)
        module = load_function(name)
        module.service.limiter._clock = self.clock
        module.service.limiter._client = AtomicClient(module.service.limiter._client)
        return module

    def outcome(self, sender: str = SENDER) -> tuple[list[str], list[str], list[str]]:
        """(its own texts the sender saw broadcast, error codes it got, texts the witness received).
        SENDER's texts start with "m", OTHER's with "o"; both are in the room, so each sees the other's."""
        frames = self.api.frames_to(sender)
        own = [f["message"] for f in frames if f["action"] == "message"]
        accepted = [text for text in own if text.startswith("o" if sender == OTHER else "m")]
        codes = [f["code"] for f in frames if f["action"] == "error"]
        return accepted, codes, texts_to(self.api, WITNESS)


@pytest.fixture
def room(
    connected: Callable[..., None], management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> Room:
    for cid, user in ((SENDER, "alice"), (OTHER, "alice"), (WITNESS, "bob")):
        connected(cid, "general", user)
    return Room(management_api, monkeypatch, Clock())


def texts_to(api: FakeManagementApi, cid: str) -> list[str]:
    return [f["message"] for f in api.frames_to(cid) if f["action"] == "message"]


def frame(module: Any, body: Any, connection_id: str, route: str) -> None:
    event = message_event(body, connection_id=connection_id, route=route)
    assert module.handler(event, FakeContext()) == {"statusCode": 200}


def send(module: Any, text: str, connection_id: str = SENDER) -> None:
    frame(module, {"action": "sendMessage", "message": text}, connection_id, "sendMessage")


def tally(sent: int, accepted: list[str], codes: list[str], witnessed: list[str], refused: set[str]) -> None:
    counts = dict(sent=sent, accepted=len(accepted), rate_limited=codes.count("rate_limited"))
    summary.record("rate_limit", **counts, refused_broadcasts=len(set(witnessed) & refused))


def test_rate_limit_default_burst_of_20_then_rate_limited_once(room: Room) -> None:
    module = room.load()
    texts = [f"m{i}" for i in range(30)]
    for text in texts:
        send(module, text)
    accepted, codes, witnessed = room.outcome()
    tally(30, accepted, codes, witnessed, set(texts[20:]))
    assert accepted == texts[:20]
    assert codes == ["rate_limited"]  # once for the window, not once per refused frame
    assert witnessed == texts[:20]  # nothing refused was broadcast


def test_rate_limit_refills_at_the_configured_rate_up_to_the_burst(room: Room) -> None:
    module = room.load()
    for i in range(25):
        send(module, f"m-a{i}")
    room.clock.now += 0.5  # 10 a second: 5 tokens back
    for i in range(8):
        send(module, f"m-b{i}")
    room.clock.now += 3600  # an hour idle: the bucket is full again, but holds no more than the burst
    for i in range(25):
        send(module, f"m-c{i}")
    accepted, codes, witnessed = room.outcome()
    refused = {f"m-a{i}" for i in range(20, 25)} | {f"m-b{i}" for i in range(5, 8)}
    refused |= {f"m-c{i}" for i in range(20, 25)}
    tally(58, accepted, codes, witnessed, refused)
    summary.record("rate_limit", refilled=len([t for t in accepted if not t.startswith("m-a")]))
    assert accepted == (
        [f"m-a{i}" for i in range(20)] + [f"m-b{i}" for i in range(5)] + [f"m-c{i}" for i in range(20)]
    )
    # Told at the first refusal, not again within that second (m-b), again an hour later (m-c).
    assert codes == ["rate_limited", "rate_limited"]
    assert witnessed == accepted


def test_rate_limit_configured_rate_and_burst(room: Room) -> None:
    module = room.load(rate="2", burst="4")
    sent = 0
    for second in range(5):
        for i in range(6):
            send(module, f"m{second}-{i}")
            sent += 1
        room.clock.now += 1.0
    accepted, codes, witnessed = room.outcome()
    tally(sent, accepted, codes, witnessed, set())
    # 4 at once, then 2 a second; one notice in each second that refused something.
    assert [len([t for t in accepted if t.startswith(f"m{s}-")]) for s in range(5)] == [4, 2, 2, 2, 2]
    assert codes == ["rate_limited"] * 5
    assert witnessed == accepted


def test_rate_limit_is_per_user_across_connections(room: Room) -> None:
    module = room.load(rate="1", burst="3")
    for i in range(2):
        send(module, f"m{i}")
    for i in range(3):
        send(module, f"o{i}", connection_id=OTHER)  # same user, another connection: the same bucket
    send(module, "w0", connection_id=WITNESS)  # another user: a bucket of its own
    accepted, codes, witnessed = room.outcome()
    other_accepted, other_codes, _ = room.outcome(OTHER)
    tally(6, accepted + other_accepted, codes + other_codes, witnessed, {"o1", "o2"})
    assert accepted == ["m0", "m1"] and codes == []
    assert other_accepted == ["o0"] and other_codes == ["rate_limited"]
    assert "w0" in witnessed


def test_rate_limit_ten_connections_of_one_user_share_one_bucket(
    room: Room, connected: Callable[..., None]
) -> None:
    connections = [f"FLOOD{i:02d}xxxxxxx0=" for i in range(10)]
    for cid in connections:  # and WITNESS (bob), alice's two
        connected(cid, "general", "mallory")
    module = room.load()
    texts = [f"f{c}-{i}" for i in range(20) for c in range(10)]
    for n, text in enumerate(texts):
        send(module, text, connection_id=connections[n % 10])
    witnessed = texts_to(room.api, WITNESS)
    notices = [f for cid in connections for f in room.api.frames_to(cid) if f.get("code") == "rate_limited"]
    summary.record("per_user_flood", tried=len(texts), refused=len(texts) - len(witnessed), told=len(notices))
    assert witnessed == texts[:20]  # the burst of one user, not ten
    assert len(notices) == 1


def test_rate_limit_counts_junk_frames_and_answers_them_once_per_window(room: Room) -> None:
    default = room.load("1", "5", "default")
    for _ in range(1000):
        frame(default, "junk", SENDER, "$default")
    codes = [f["code"] for f in room.api.frames_to(SENDER)]
    summary.record("per_user_flood", tried=1000, refused=1000 - codes.count("invalid_json"), told=1)
    assert codes == ["invalid_json"] * 5 + ["rate_limited"]
    # The junk spent the user's bucket: a chat message from another connection is refused too.
    module = room.load(rate="1", burst="5")
    send(module, "o0", connection_id=OTHER)
    assert room.outcome(OTHER)[0] == []


def test_rate_limit_counts_invalid_and_history_frames(room: Room) -> None:
    module = room.load(rate="1", burst="4")
    history = room.load("1", "4", "get_history")
    send(module, "   ")  # invalid_message: refused, but counted
    frame(history, {"action": "getHistory"}, SENDER, "getHistory")
    frame(history, {"action": "getHistory", "limit": 0}, SENDER, "getHistory")
    send(module, "m0")
    send(module, "m1")  # the fifth frame: over the burst of 4
    frames = room.api.frames_to(SENDER)
    answers = [f.get("code") or f["action"] for f in frames]
    assert answers == ["invalid_message", "history", "invalid_request", "message", "rate_limited"]


class TickingClock(Clock):
    """Every reading is 1 ms later than the one before."""

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def test_rate_limit_concurrent_sends_never_exceed_the_burst(room: Room) -> None:
    room.clock = TickingClock()
    module = room.load(rate="0.001", burst="5")
    texts = [f"m{i}" for i in range(20)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda text: send(module, text), texts))
    accepted, codes, witnessed = room.outcome()
    tally(20, accepted, codes, witnessed, set(texts) - set(accepted))
    assert len(accepted) == 5, accepted  # the conditional update: no token is spent twice, none lost
    assert codes == ["rate_limited"]
    assert sorted(witnessed) == sorted(accepted)


def limiter_for(dynamodb: Any, clock: Any, *, rate: float, burst: int) -> RateLimiter:
    return RateLimiter(
        "chat_messages",
        client=AtomicClient(dynamodb),
        bucket=TokenBucket(rate=rate, burst=burst),
        clock=clock,
    )


def test_rate_limit_refill_is_exact_whatever_the_clock_reads(dynamodb: Any) -> None:
    clock = Clock(float(int(time.time())) + 0.0006)
    limiter = limiter_for(dynamodb, clock, rate=10, burst=5)
    assert [limiter.take("alice") for _ in range(6)][-1] is not Verdict.ALLOWED
    clock.now += 0.5  # 5 tokens back at 10 a second, to the microsecond
    assert [limiter.take("alice") for _ in range(5)] == [Verdict.ALLOWED] * 5
    assert limiter.take("alice") is Verdict.REFUSED_SILENT  # told 0.5 s ago: within the window


def test_rate_limit_losing_races_is_not_a_refusal(dynamodb: Any) -> None:
    clock = Clock()
    limiter = limiter_for(dynamodb, clock, rate=10, burst=20)
    rival = limiter_for(dynamodb, clock, rate=10, burst=20)
    raw = limiter._client
    races = [2]  # both writes of this frame are each beaten by another invocation's

    class Racing:
        def update_item(self, **kwargs: Any) -> Any:
            if races[0] > 0:
                races[0] -= 1
                assert rival.take("alice") is Verdict.ALLOWED
            return raw.update_item(**kwargs)

    assert limiter.take("alice") is Verdict.ALLOWED  # creates the bucket
    limiter._client = Racing()
    assert limiter.take("alice") is Verdict.ALLOWED  # must wait its turn, not be refused
    assert races == [0]
    limiter._client = raw
    # 20 - 4 spent (the first, 2 rivals, this frame): 16 left, then refused.
    assert [limiter.take("alice") for _ in range(17)].count(Verdict.ALLOWED) == 16


def test_rate_limit_bucket_item_expires(dynamodb: Any) -> None:
    clock = Clock()
    limiter = limiter_for(dynamodb, clock, rate=10, burst=20)
    limiter.take("alice")
    item = dynamodb.get_item(
        TableName="chat_messages", Key={"room_id": {"S": "rate#alice"}, "message_id": {"S": "bucket"}}
    )["Item"]
    # A minute after the bucket is full again (2 s at 10 a second) nothing is left to remember.
    assert clock.now + 2 < int(item["ttl"]["N"]) <= clock.now + 2 + 61


def test_rate_limit_zero_disables_it(dynamodb: Any) -> None:
    limiter = limiter_for(dynamodb, Clock(), rate=0, burst=1)
    assert all(limiter.take("alice") is Verdict.ALLOWED for _ in range(50))
