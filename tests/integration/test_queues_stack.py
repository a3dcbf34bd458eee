"""The local SQS event source mapping through the real stack: ``terraform/queues`` maps queue ``jobs``
(visibility 2 s, 2 receives, then its DLQ) to ``t_batch``: ReportBatchItemFailures, maximum concurrency 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel

from local_stack import Stack, StackThread
from local_stack.gateway import Gateway
from local_stack.queues import EventSourceMappings, LocalQueues
from local_stack.runtime import LambdaRuntime

from .helpers import HERE, REPO, EventLog, test_config, wait_until

TF_QUEUES = (REPO / "terraform", HERE / "terraform" / "queues")


def invocations(log_dir: Path) -> list[dict[str, Any]]:
    return EventLog(log_dir).events("t_batch")  # t_batch writes one line per invocation to t_batch.jsonl


def received(log_dir: Path) -> list[tuple[str, str]]:
    """(body id, ApproximateReceiveCount) of every record the function finished."""
    return [
        (json.loads(r["body"])["id"], r["attributes"]["ApproximateReceiveCount"])
        for inv in invocations(log_dir)
        for r in inv["event"]["Records"]
    ]


@pytest.fixture
def queue_stack(
    local_stack_factory: Callable[..., Stack], tmp_path: Path
) -> Callable[..., tuple[Stack, Path]]:
    def start(**tf_vars: Any) -> tuple[Stack, Path]:
        log_dir = tmp_path / f"log{len(list(tmp_path.iterdir()))}"
        log_dir.mkdir()
        stack = local_stack_factory(
            terraform_dirs=TF_QUEUES,
            web_port=None,
            max_workers=3,
            tf_vars={"event_log_dir": str(log_dir), **tf_vars},
        )
        return stack, log_dir

    return start


def send(stack: Stack, *bodies: dict[str, Any], **extra: Any) -> None:
    assert stack.queues is not None
    stack.queues.client.send_message_batch(
        QueueUrl=stack.queues.urls["jobs"],
        Entries=[{"Id": str(i), "MessageBody": json.dumps(b), **extra} for i, b in enumerate(bodies)],
    )


def test_event_shape_and_queue_attributes(queue_stack: Callable[..., tuple[Stack, Path]]) -> None:
    stack, log_dir = queue_stack()
    assert stack.queues is not None
    client, url = stack.queues.client, stack.queues.urls["jobs"]
    attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "2"
    assert attrs["MessageRetentionPeriod"] == "3600"
    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": stack.queues.arns["jobs_dlq"],
        "maxReceiveCount": 2,
    }
    assert url.rsplit("/", 1)[1] == f"ws-chat-jobs-{stack.ws_port}"
    assert stack.pools["t_batch"].env["JOBS_QUEUE_URL"] == url
    assert stack.pools["t_batch"].env["AWS_ENDPOINT_URL_SQS"] == stack.queues.endpoint

    send(stack, {"id": "a"}, MessageAttributes={"kind": {"DataType": "String", "StringValue": "shard"}})
    assert wait_until(lambda: len(invocations(log_dir)) == 1, 15), stack.logs
    event = invocations(log_dir)[0]["event"]
    SqsModel.model_validate(event)  # Powertools' own model of Lambda's SQS event
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == stack.queues.arns["jobs"]
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"]["stringValue"] == "shard"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert wait_until(lambda: stack.queues is not None and stack.queues.depth("jobs") == 0, 10)


def test_only_the_failed_record_comes_back_then_goes_to_the_dlq(
    queue_stack: Callable[..., tuple[Stack, Path]],
) -> None:
    stack, log_dir = queue_stack()
    assert stack.queues is not None
    send(stack, {"id": "ok1"}, {"id": "bad", "fail": True}, {"id": "ok2"})
    # "bad" is received twice (maxReceiveCount 2), then moved to the DLQ by the next receive
    dlq = stack.queues.urls["jobs_dlq"]

    def dead_lettered() -> list[dict[str, Any]]:
        assert stack.queues is not None
        return stack.queues.client.receive_message(QueueUrl=dlq, VisibilityTimeout=0).get("Messages", [])

    assert wait_until(lambda: len(dead_lettered()) == 1, 20), (received(log_dir), stack.logs)
    assert json.loads(dead_lettered()[0]["Body"])["id"] == "bad"
    got = received(log_dir)
    assert sorted(i for i, _ in got if i != "bad") == ["ok1", "ok2"], got  # each once: deleted
    assert sorted(c for i, c in got if i == "bad") == ["1", "2"], got
    assert stack.queues.depth("jobs") == 0


def test_a_crash_returns_the_whole_batch(queue_stack: Callable[..., tuple[Stack, Path]]) -> None:
    stack, log_dir = queue_stack()
    send(stack, {"id": "mate"}, {"id": "crash", "crash_first": True})
    assert wait_until(lambda: {"mate", "crash"} <= {i for i, _ in received(log_dir)}, 20), stack.logs
    assert any("Runtime.ExitError" in line for line in stack.logs), stack.logs
    got = received(log_dir)
    assert sorted(got) == [("crash", "2"), ("mate", "2")], got  # both redelivered, then deleted
    assert stack.event_sources is not None
    assert stack.event_sources.pollers["jobs"].stats.failed_batches == 1


def test_at_most_maximum_concurrency_in_flight(queue_stack: Callable[..., tuple[Stack, Path]]) -> None:
    stack, log_dir = queue_stack(jobs_batch_size=1)  # 3 workers, maximum_concurrency 2
    send(stack, *({"id": f"s{i}", "sleep": 0.6} for i in range(6)))
    assert wait_until(lambda: len(invocations(log_dir)) == 6, 30), stack.logs
    spans = [(inv["start"], inv["end"]) for inv in invocations(log_dir)]
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert overlap == 2, spans  # never 3, though the pool has 3 workers
    assert all(len(inv["event"]["Records"]) == 1 for inv in invocations(log_dir))


def test_teardown_stops_the_pollers_before_the_gateway_and_the_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stopped: list[str] = []

    def recording(owner: Any, method: str, what: str) -> None:
        real = getattr(owner, method)

        async def wrapper(self: Any, *args: Any) -> Any:
            stopped.append(what)
            return await real(self, *args)

        monkeypatch.setattr(owner, method, wrapper)

    recording(EventSourceMappings, "__aexit__", "pollers")
    recording(Gateway, "close", "gateway")
    recording(LambdaRuntime, "close", "runtime")
    recording(LocalQueues, "__aexit__", "queues")
    config = test_config(
        terraform_dirs=TF_QUEUES, web_port=None, min_workers=1, tf_vars={"event_log_dir": str(tmp_path)}
    )
    with StackThread(config) as stack:
        assert stack.event_sources is not None and set(stack.event_sources.pollers) == {"jobs"}
    assert stopped == ["pollers", "gateway", "runtime", "queues"]
