"""Fan-out: bounded concurrency (counted, not timed), retries, and what is deleted."""

from __future__ import annotations

import pytest

from shared.management_api import ManagementApiClient
from shared.sender import Outcome, RetryPolicy, Sender
from tests.support.management_api import FakeManagementApi

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
    from botocore.exceptions import ClientError

    from shared.sender import classify

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
