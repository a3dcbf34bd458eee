"""Fan-out: bounded concurrency (counted, not timed), retries, and what is deleted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from local_stack.testing import FakeManagementApi
from shared.management_api import ManagementApiClient
from shared.observability import metrics
from shared.sender import Outcome, RetryPolicy, Sender, classify

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


def make_sender(pool: int, gone: list[str]) -> Sender:
    return Sender(pool_size=pool, on_gone=gone.append, retry=FAST_RETRY)


def test_broadcast_200_recipients_runs_many_posts_at_once_never_more_than_pool(
    management_api: FakeManagementApi,
) -> None:
    # Seed defect 5: recipients were posted to one at a time.
    management_api.latency = 0.02
    recipients = [f"R{i:014d}=" for i in range(200)]
    management_api.live.update(recipients)
    sender = make_sender(16, [])
    result = sender.broadcast(management_api.endpoint_url, recipients, b'{"x":1}')
    assert result.delivered == 200 and result.gone == 0 and result.failed == 0
    assert management_api.max_in_flight > 8
    assert management_api.max_in_flight <= 16


def test_management_client_pool_matches_fanout_pool(management_api: FakeManagementApi) -> None:
    sender = make_sender(24, [])
    client = sender.client(management_api.endpoint_url)
    assert isinstance(client, ManagementApiClient) and client.pool_size == 24
    assert sender.client(management_api.endpoint_url) is client  # one shared client


def test_broadcast_counts_each_outcome(management_api: FakeManagementApi) -> None:
    management_api.live.update({"LIVE1xxxxxxxxx0=", "LIVE2xxxxxxxxx0="})
    management_api.scripts["FORBIDxxxxxxxx0="] = [403]
    gone: list[str] = []
    result = make_sender(4, gone).broadcast(
        management_api.endpoint_url,
        ["LIVE1xxxxxxxxx0=", "LIVE2xxxxxxxxx0=", "GONExxxxxxxxxx0=", "FORBIDxxxxxxxx0="],
        b"{}",
    )
    assert (result.recipients, result.delivered, result.gone, result.failed) == (4, 2, 1, 1)
    assert gone == ["GONExxxxxxxxxx0="]


def test_plain_410_without_error_type_is_still_gone() -> None:
    error = ClientError(
        {"Error": {"Code": "410"}, "ResponseMetadata": {"HTTPStatusCode": 410}}, "PostToConnection"
    )
    assert classify(error) == (Outcome.GONE, False)


@pytest.mark.parametrize(("status", "retried"), [(429, True), (500, True), (403, False), (413, False)])
def test_post_retries_only_transient_errors(
    management_api: FakeManagementApi, status: int, retried: bool
) -> None:
    management_api.scripts["FLAKYxxxxxxxxx0="] = [status] * 5
    gone: list[str] = []
    outcome = make_sender(2, gone).post(management_api.endpoint_url, "FLAKYxxxxxxxxx0=", b"{}")
    assert outcome is Outcome.FAILED
    assert management_api.attempts["FLAKYxxxxxxxxx0="] == (3 if retried else 1)
    assert gone == []


def test_post_backs_off_between_retries(management_api: FakeManagementApi) -> None:
    management_api.scripts["FLAKYxxxxxxxxx0="] = [429, 429, 429]
    sleeps: list[float] = []
    sender = Sender(
        pool_size=1, on_gone=lambda cid: None, retry=RetryPolicy(base_delay=0.1), sleep=sleeps.append
    )
    sender.post(management_api.endpoint_url, "FLAKYxxxxxxxxx0=", b"{}")
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.1 and 0 <= sleeps[1] <= 0.2


def test_unreachable_endpoint_fails_without_deleting() -> None:
    gone: list[str] = []
    outcome = make_sender(1, gone).post("http://127.0.0.1:9/prod", "ANYxxxxxxxxxxx0=", b"{}")
    assert outcome is Outcome.FAILED and gone == []


def test_failing_gone_cleanup_does_not_stop_the_broadcast(management_api: FakeManagementApi) -> None:
    management_api.live.add("LIVExxxxxxxxxx0=")

    def broken(connection_id: str) -> None:
        raise RuntimeError("DynamoDB down")

    sender = Sender(pool_size=2, on_gone=broken, retry=FAST_RETRY)
    result = sender.broadcast(management_api.endpoint_url, ["GONExxxxxxxxxx0=", "LIVExxxxxxxxxx0="], b"{}")
    assert (result.delivered, result.gone, result.gone_kept) == (1, 0, 1)


def test_retry_delay_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.05, max_delay=0.3)
    delays = [policy.delay(attempt) for attempt in (1, 5, 10) for _ in range(50)]
    assert all(0 <= d <= 0.3 for d in delays)
    assert len(set(delays)) > 10


def _metric(name: str) -> float:
    entry = metrics.metric_set.get(name)
    if entry is None:
        return 0
    values = entry["Value"]
    return sum(values) if isinstance(values, list) else values


@pytest.fixture
def clean_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def test_retries_after_read_timeouts_are_counted_apart_and_logged(
    management_api: FakeManagementApi, clean_metrics: None, caplog: pytest.LogCaptureFixture
) -> None:
    # A reader that does not read makes the POST outlast the read timeout: each retry may duplicate.
    management_api.latency = 0.4
    management_api.live.add("SLOWxxxxxxxxxx0=")
    management_api.scripts["BUSYxxxxxxxxxx0="] = [429, 200]
    sender = Sender(
        pool_size=2,
        on_gone=lambda cid: None,
        retry=FAST_RETRY,
        client_factory=lambda url: ManagementApiClient(
            url, pool_size=2, connect_timeout=0.05, read_timeout=0.05
        ),
    )
    with caplog.at_level(logging.WARNING):
        slow = sender.broadcast(management_api.endpoint_url, ["SLOWxxxxxxxxxx0="], b"{}")
        management_api.latency = 0.0
        busy = sender.broadcast(management_api.endpoint_url, ["BUSYxxxxxxxxxx0="], b"{}")
    assert (slow.failed, slow.retries, slow.read_timeout_retries) == (1, 2, 2)  # 3 read timeouts
    assert (busy.delivered, busy.retries, busy.read_timeout_retries) == (1, 1, 0)  # 429, then 200
    assert (_metric("PostRetries"), _metric("PostReadTimeoutRetries")) == (3, 2)
    retried = [r for r in caplog.records if r.getMessage() == "post_to_connection retried"]
    assert sorted((r.connection_id, r.attempt, r.read_timeout) for r in retried) == [  # type: ignore[attr-defined]
        ("BUSYxxxxxxxxxx0=", 1, False),
        ("SLOWxxxxxxxxxx0=", 1, True),
        ("SLOWxxxxxxxxxx0=", 2, True),
    ]
    assert all(r.levelno == logging.WARNING and r.error for r in retried)  # type: ignore[attr-defined]


def test_single_post_counts_its_retries(management_api: FakeManagementApi, clean_metrics: None) -> None:
    management_api.scripts["FLAKYxxxxxxxxx0="] = [500, 200]
    outcome = make_sender(1, []).post(management_api.endpoint_url, "FLAKYxxxxxxxxx0=", b"{}")
    assert outcome is Outcome.DELIVERED
    assert (_metric("PostRetries"), _metric("PostReadTimeoutRetries")) == (1, 0)


class RecordingClient:
    """A management client with no HTTP pool: records posting threads and overlap, raises ``errors[cid]``."""

    def __init__(self, latency: float = 0.0, errors: dict[str, Exception] | None = None) -> None:
        self.latency = latency
        self.errors = errors or {}
        self.threads: set[int] = set()
        self.delivered: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        with self._lock:
            self.threads.add(threading.get_ident())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)
            if ConnectionId in self.errors:
                raise self.errors[ConnectionId]
            with self._lock:
                self.delivered.append(ConnectionId)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_one_recipient_raising_a_non_aws_error_does_not_fail_the_broadcast() -> None:
    # Seeded defect: a fan-out without its per-recipient guard let this error fail the whole broadcast.
    client = RecordingClient(errors={"R2": ValueError("a bug in one post")})
    sender = Sender(pool_size=2, on_gone=lambda cid: None, client_factory=lambda url: client)
    result = sender.broadcast("http://unused/prod", ["R1", "R2", "R3"], b"{}")
    assert (result.recipients, result.delivered, result.failed) == (3, 2, 1)
    assert sorted(client.delivered) == ["R1", "R3"]


def test_fanout_threads_are_bounded_by_pool_size() -> None:
    # Seeded defect: one thread per recipient. The HTTP pool caps posts on the wire, so this client
    # (which has no pool) is what sees the threads.
    client = RecordingClient(latency=0.02)
    sender = Sender(pool_size=4, on_gone=lambda cid: None, client_factory=lambda url: client)
    for _ in range(2):  # the pool is reused across broadcasts, not grown
        result = sender.broadcast("http://unused/prod", [f"R{i}" for i in range(40)], b"{}")
        assert result.delivered == 40
    assert client.max_in_flight == 4
    assert len(client.threads) <= 4


def test_retry_delay_bound_doubles_per_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    # Seeded defect: a linear backoff (base * attempt). Full jitter draws in [0, bound]: read the bound.
    monkeypatch.setattr("shared.sender.random.uniform", lambda low, high: high)
    policy = RetryPolicy(base_delay=0.05, max_delay=1.0)
    assert [policy.delay(attempt) for attempt in range(1, 7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]


def test_a_broadcast_starts_no_attempt_once_may_start_says_no(management_api: FakeManagementApi) -> None:
    recipients = [f"R{i:014d}=" for i in range(5)]
    management_api.live.update([*recipients, "FLAKYxxxxxxxxx0="])
    management_api.scripts["FLAKYxxxxxxxxx0="] = [500]  # its retry is an attempt, asked for too
    budget = iter([True, True, True])

    def may_start() -> bool:
        return next(budget, False)

    result = make_sender(1, []).broadcast(
        management_api.endpoint_url, ["FLAKYxxxxxxxxx0=", *recipients], b"{}", may_start=may_start
    )
    # Attempts: FLAKY (500), its retry (200), recipients[0]; then nothing else starts.
    assert (result.delivered, result.failed, result.deferred) == (2, 0, 4)
    assert sum(management_api.attempts.values()) == 3
