"""The fanout queue in moto, and what Lambda's SQS event source mapping does with it, for unit tests:
receive a batch, invoke the function with it as an SQS event, delete the records it did not report in
``batchItemFailures`` (the failed ones come back after their visibility timeout)."""

from __future__ import annotations

import json
from typing import Any

FANOUT_QUEUE = "chat-fanout"
FANOUT_DLQ = "chat-fanout-dlq"
REGION = "us-east-1"
FANOUT_TIMEOUT_SECONDS = 60  # terraform/functions.tf: fanout stops starting posts 12 s before its deadline


def fanout_context() -> Any:
    """A Lambda context with the fanout function's own timeout (the kit's default, 10 s, is under the
    time fanout keeps free at the end of an invocation, so it would post nothing)."""
    from local_stack.testing import FakeContext

    return FakeContext("fanout", seconds=FANOUT_TIMEOUT_SECONDS)


def create_fanout_queues(
    client: Any, *, max_receive_count: int = 5, visibility: int = 360
) -> tuple[str, str]:
    """(queue URL, DLQ URL), the queue redriving to the DLQ as terraform/sqs.tf sets it up."""
    dlq_url = client.create_queue(QueueName=FANOUT_DLQ)["QueueUrl"]
    dlq = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    redrive = {"deadLetterTargetArn": dlq["QueueArn"], "maxReceiveCount": max_receive_count}
    attributes = {"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)}
    queue_url = client.create_queue(QueueName=FANOUT_QUEUE, Attributes=attributes)["QueueUrl"]
    return queue_url, dlq_url


def receive(client: Any, queue_url: str, *, batch_size: int = 10) -> list[dict[str, Any]]:
    response = client.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=batch_size, MessageSystemAttributeNames=["All"]
    )
    return list(response.get("Messages", []))


def sqs_event(
    messages: list[dict[str, Any]], queue_arn: str = f"arn:aws:sqs:{REGION}:123456789012:{FANOUT_QUEUE}"
) -> dict[str, Any]:
    """The event Lambda's mapping sends for ``messages`` (as ReceiveMessage returned them)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": m.get("Attributes", {}).get("SentTimestamp", "0"),
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "0",
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def bodies(client: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every job on the queue, decoded (received and made visible again at once)."""
    jobs: list[dict[str, Any]] = []
    while messages := receive(client, queue_url):
        jobs.extend(json.loads(m["Body"]) for m in messages)
        for m in messages:
            client.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return jobs


def deliver(
    client: Any, queue_url: str, function: Any, context: Any, *, batch_size: int = 10
) -> list[dict[str, Any]]:
    """One poll of the mapping: receive, invoke, delete what succeeded. Returns the function's answer
    per batch (none when the queue had nothing visible)."""
    answers = []
    while messages := receive(client, queue_url, batch_size=batch_size):
        answer = function.handler(sqs_event(messages), context)
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] not in failed:
                client.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        answers.append(answer)
        if failed:
            break  # the failed ones are invisible until their timeout: the caller decides when to poll again
    return answers


class DropsFirstEntry:
    """An SQS client whose SendMessageBatch reports its first entry failed, every time."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        response: dict[str, Any] = {"Successful": [], "Failed": []}
        if len(Entries) > 1:
            response = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=Entries[1:])
        response.setdefault("Failed", []).append(
            {"Id": Entries[0]["Id"], "SenderFault": False, "Code": "InternalError", "Message": "busy"}
        )
        return response
