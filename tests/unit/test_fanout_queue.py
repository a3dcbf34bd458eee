"""The fanout queue's producer: batches of 10 and 256 KiB, failed entries retried alone, a domain error
(never botocore's) when a job cannot be queued, and the client's endpoint from AWS_ENDPOINT_URL_SQS."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from shared import deadline
from shared.fanout_queue import EnqueueFailed, FanoutQueue, sqs_client
from tests.support.sqs import bodies


class ScriptedSqs:
    """send_message_batch answering from a script: a set of entry bodies to fail per call."""

    def __init__(self, *failures: Any) -> None:
        self.failures = list(failures)
        self.calls: list[list[str]] = []

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append([e["MessageBody"] for e in Entries])
        failing = self.failures.pop(0) if self.failures else set()
        if isinstance(failing, Exception):
            raise failing
        failed = [
            {"Id": e["Id"], "SenderFault": sender_fault, "Code": "InternalError", "Message": "try again"}
            for e in Entries
            for body, sender_fault in failing
            if e["MessageBody"] == body
        ]
        ok = [{"Id": e["Id"]} for e in Entries if e["Id"] not in {f["Id"] for f in failed}]
        return {"Successful": ok, "Failed": failed}


def queue(client: Any) -> FanoutQueue:
    return FanoutQueue(
        "https://sqs.us-east-1.amazonaws.com/123456789012/q", client=client, sleep=lambda s: None
    )


def test_jobs_go_in_batches_of_ten(sqs: Any) -> None:
    producer = FanoutQueue(sqs.url, client=sqs.client)
    assert producer.enqueue(json.dumps({"job": i}) for i in range(25)) == 25
    assert sorted(job["job"] for job in bodies(sqs.client, sqs.url)) == list(range(25))


@pytest.mark.parametrize(
    ("jobs", "sizes"),
    [(["x" * 100_000] * 5, [1, 2, 2]), ([str(i) for i in range(25)], [5, 10, 10]), ([], [])],
    ids=["at-most-256-kib", "at-most-ten-jobs", "nothing-to-queue-calls-nothing"],
)
def test_a_batch_holds_at_most_ten_jobs_and_256_kib(jobs: list[str], sizes: list[int]) -> None:
    client = ScriptedSqs()
    assert queue(client).enqueue(iter(jobs)) == len(jobs)  # any iterable, read once (a generator too)
    assert sorted(len(call) for call in client.calls) == sizes


def test_failed_entries_are_sent_again_alone() -> None:
    client = ScriptedSqs({("b", False)})
    assert queue(client).enqueue(["a", "b", "c"]) == 3
    assert client.calls == [["a", "b", "c"], ["b"]]


@pytest.mark.parametrize(
    ("script", "calls"),
    [
        ([{("b", False)}] * 3, [["a", "b", "c"], ["b"], ["b"]]),
        (
            [{("b", False)}, ClientError({"Error": {"Code": "ThrottlingException"}}, "SendMessageBatch")],
            [["a", "b", "c"], ["b"]],
        ),
    ],
    ids=["failing-every-attempt", "a-retry-that-raises"],
)
def test_entries_never_queued_raise_a_domain_error_counting_what_was_queued(
    script: list[Any], calls: list[list[str]]
) -> None:
    client = ScriptedSqs(*script)
    with pytest.raises(EnqueueFailed, match="1 of 3 shard jobs") as raised:
        queue(client).enqueue(["a", "b", "c"])
    assert (raised.value.enqueued, raised.value.total) == (2, 3)
    assert client.calls == calls


def test_an_entry_sqs_refuses_is_not_retried() -> None:
    client = ScriptedSqs({("b", True)})
    with pytest.raises(EnqueueFailed, match="InternalError"):
        queue(client).enqueue(["a", "b"])
    assert len(client.calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessageBatch"),
        EndpointConnectionError(endpoint_url="https://sqs"),
        deadline.DeadlineExceeded("no time"),
    ],
    ids=["client-error", "network", "deadline"],
)
def test_botocore_errors_become_enqueue_failed(error: Exception) -> None:
    with pytest.raises(EnqueueFailed) as raised:
        queue(ScriptedSqs(error)).enqueue(["a"])
    assert raised.value.enqueued == 0
    assert not isinstance(raised.value, ClientError)


def test_a_missing_queue_raises_enqueue_failed(dynamodb: Any) -> None:
    producer = FanoutQueue(
        "https://sqs.us-east-1.amazonaws.com/123456789012/none", client=sqs_client(), sleep=lambda s: None
    )
    with pytest.raises(EnqueueFailed):
        producer.enqueue(["a"])


def test_the_client_takes_its_endpoint_from_aws_endpoint_url_sqs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4566")
    assert sqs_client().meta.endpoint_url == "http://127.0.0.1:4566"


def test_the_client_is_deadline_guarded() -> None:
    client = sqs_client(connect_timeout=1, read_timeout=2)
    assert deadline.attempt_seconds(client) == 3
    with deadline._set(deadline.Deadline.after(1)), pytest.raises(deadline.DeadlineExceeded):
        client.get_queue_url(QueueName="q")
