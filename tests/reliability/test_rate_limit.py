"""Per-connection rate limit (RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST, error code ``rate_limited``).

The clock is injected into the function's connection store (``ConnectionStore(clock=...)``), so refill is
counted in simulated seconds, never waited for.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.connections import ConnectionStore
from tests.conftest import load_function
from tests.reliability import summary
from tests.support.events import FakeContext, message_event
from tests.support.management_api import FakeManagementApi
from tests.support.records import put_record

SENDER, OTHER, WITNESS = "SENDERxxxxxxxx0=", "OTHERxxxxxxxxx0=", "WITNESSxxxxxxx0="


class Clock:
    """Simulated seconds. Starts on a whole second, so every reading in these tests is exact in binary and
    in the milliseconds the store keeps (see the rounding test below for other starting points)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time())) if start is None else start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


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


def limited_function(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, rate: str | None = None, burst: str | None = None
) -> Any:
    for name, value in (("RATE_LIMIT_PER_SECOND", rate), ("RATE_LIMIT_BURST", burst)):
        if value is None:
            monkeypatch.delenv(name, raising=False)  # the defaults: 10 a second, bursts of 20
        else:
            monkeypatch.setenv(name, value)
    module = load_function("send_message")
    module.store._clock = clock
    module.store._client = AtomicClient(module.store._client)
    return module


@pytest.fixture
def room(dynamodb: Any, management_api: FakeManagementApi) -> Any:
    for cid, user in ((SENDER, "alice"), (OTHER, "alice"), (WITNESS, "bob")):
        put_record(dynamodb, cid, "general", user)
        management_api.live.add(cid)
    return dynamodb


def send(module: Any, text: str, connection_id: str = SENDER) -> None:
    event = message_event({"action": "sendMessage", "message": text}, connection_id=connection_id)
    assert module.handler(event, FakeContext()) == {"statusCode": 200}


def outcome(api: FakeManagementApi, sender: str = SENDER) -> tuple[list[str], list[str], list[str]]:
    """(its own texts the sender saw broadcast, error codes it got, texts the witness received).

    SENDER's texts start with "m", OTHER's with "o"; both are in the room, so each sees the other's."""
    prefix = "o" if sender == OTHER else "m"
    frames = api.frames_to(sender)
    accepted = [f["message"] for f in frames if f["action"] == "message" and f["message"].startswith(prefix)]
    codes = [f["code"] for f in frames if f["action"] == "error"]
    witnessed = [f["message"] for f in api.frames_to(WITNESS) if f["action"] == "message"]
    return accepted, codes, witnessed


def tally(sent: int, accepted: list[str], codes: list[str], witnessed: list[str], refused: set[str]) -> None:
    summary.record(
        "rate_limit",
        sent=sent,
        accepted=len(accepted),
        rate_limited=codes.count("rate_limited"),
        refused_broadcasts=len(set(witnessed) & refused),
    )


def test_rate_limit_default_burst_of_20_then_rate_limited(
    room: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    module = limited_function(monkeypatch, clock)
    texts = [f"m{i}" for i in range(30)]
    for text in texts:
        send(module, text)
    accepted, codes, witnessed = outcome(management_api)
    tally(30, accepted, codes, witnessed, set(texts[20:]))
    assert accepted == texts[:20]
    assert codes == ["rate_limited"] * 10
    assert witnessed == texts[:20]  # nothing refused was broadcast


def test_rate_limit_refills_at_the_configured_rate_up_to_the_burst(
    room: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    module = limited_function(monkeypatch, clock)
    for i in range(25):
        send(module, f"m-a{i}")
    clock.now += 0.5  # 10 a second: 5 tokens back
    for i in range(8):
        send(module, f"m-b{i}")
    clock.now += 3600  # an hour idle: the bucket is full again, but holds no more than the burst
    for i in range(25):
        send(module, f"m-c{i}")
    accepted, codes, witnessed = outcome(management_api)
    refused = {f"m-a{i}" for i in range(20, 25)} | {f"m-b{i}" for i in range(5, 8)}
    refused |= {f"m-c{i}" for i in range(20, 25)}
    tally(58, accepted, codes, witnessed, refused)
    summary.record("rate_limit", refilled=len([t for t in accepted if not t.startswith("m-a")]))
    assert accepted == (
        [f"m-a{i}" for i in range(20)] + [f"m-b{i}" for i in range(5)] + [f"m-c{i}" for i in range(20)]
    )
    assert codes.count("rate_limited") == 13
    assert witnessed == accepted


def test_rate_limit_configured_rate_and_burst(
    room: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    module = limited_function(monkeypatch, clock, rate="2", burst="4")
    sent = 0
    for second in range(5):
        for i in range(6):
            send(module, f"m{second}-{i}")
            sent += 1
        clock.now += 1.0
    accepted, codes, witnessed = outcome(management_api)
    tally(sent, accepted, codes, witnessed, set())
    # 4 at once, then 2 a second.
    assert [len([t for t in accepted if t.startswith(f"m{s}-")]) for s in range(5)] == [4, 2, 2, 2, 2]
    assert len(codes) == sent - len(accepted) and set(codes) == {"rate_limited"}
    assert witnessed == accepted


def test_rate_limit_is_per_connection(
    room: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    module = limited_function(monkeypatch, clock, rate="1", burst="3")
    for i in range(5):
        send(module, f"m{i}")
    for i in range(3):
        send(module, f"o{i}", connection_id=OTHER)  # same user, another connection: its own bucket
    accepted, codes, witnessed = outcome(management_api)
    other_accepted, other_codes, _ = outcome(management_api, OTHER)
    tally(8, accepted + other_accepted, codes + other_codes, witnessed, {"m3", "m4"})
    assert accepted == ["m0", "m1", "m2"] and codes == ["rate_limited", "rate_limited"]
    assert other_accepted == ["o0", "o1", "o2"] and other_codes == []


def test_rate_limit_refused_frames_do_not_spend_tokens(
    room: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    module = limited_function(monkeypatch, clock, rate="1", burst="3")
    for _ in range(10):
        send(module, "   ")  # invalid_message: refused before the bucket is touched
    for i in range(3):
        send(module, f"m{i}")
    accepted, codes, witnessed = outcome(management_api)
    tally(13, accepted, codes, witnessed, set())
    assert codes == ["invalid_message"] * 10
    assert accepted == ["m0", "m1", "m2"]


class TickingClock(Clock):
    """Every reading is 1 ms later than the one before."""

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def test_rate_limit_concurrent_sends_never_exceed_the_burst(
    room: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = limited_function(monkeypatch, TickingClock(), rate="0.001", burst="5")
    texts = [f"m{i}" for i in range(20)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda text: send(module, text), texts))
    accepted, codes, witnessed = outcome(management_api)
    tally(20, accepted, codes, witnessed, set(texts) - set(accepted))
    assert len(accepted) <= 5, accepted  # the conditional update: no token is spent twice
    assert len(accepted) + codes.count("rate_limited") == 20
    assert sorted(witnessed) == sorted(accepted)


def test_rate_limit_same_millisecond_writers_never_spend_a_token_twice(
    room: Any, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    module = limited_function(monkeypatch, clock, rate="1", burst="5")
    store, bucket = module.store, module.bucket
    assert store.take_message_token(store.get(SENDER), bucket)  # 4 left
    # Two concurrent invocations for one connection read the same record, then write at the same time.
    first, second = store.get(SENDER), store.get(SENDER)
    assert store.take_message_token(first, bucket)
    assert store.take_message_token(second, bucket)
    assert store.get(SENDER).rate_tokens == pytest.approx(2.0)  # 3 spent: 2 left, not 3


def test_rate_limit_refill_is_exact_whatever_the_clock_reads(
    room: Any, management_api: FakeManagementApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(float(int(time.time())) + 0.0006)  # stored as .001: 0.4 ms in the future
    module = limited_function(monkeypatch, clock, rate="10", burst="5")
    for i in range(5):
        send(module, f"m-a{i}")
    clock.now += 0.5  # 5 tokens back at 10 a second
    for i in range(5):
        send(module, f"m-b{i}")
    accepted, codes, _ = outcome(management_api)
    assert accepted == [f"m-a{i}" for i in range(5)] + [f"m-b{i}" for i in range(5)]
    assert codes == []


def test_rate_limit_losing_races_is_not_a_refusal(room: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = TickingClock()
    module = limited_function(monkeypatch, clock, rate="10", burst="20")
    store, bucket = module.store, module.bucket
    raw = store._client._client  # under AtomicClient
    rival = ConnectionStore(store.table_name, client=raw, clock=clock)
    races = [3]  # the first 3 writes of this invocation are each beaten by another invocation

    class Racing(AtomicClient):
        def update_item(self, **kwargs: Any) -> Any:
            if races[0] > 0:
                races[0] -= 1
                assert rival.take_message_token(rival.get(SENDER), bucket)
            return raw.update_item(**kwargs)

    store._client = Racing(raw)
    # 20 tokens, 3 spent by the rivals: this message must wait its turn, not be refused.
    assert store.take_message_token(store.get(SENDER), bucket)
    assert races == [0]  # all three races really happened (each rival write landed first)
    # 20 - 4 spent (3 rivals + this one) + the ticking clock's refill: 10 readings 1 ms apart at 10 a second.
    assert store.get(SENDER).rate_tokens == pytest.approx(16.1)
