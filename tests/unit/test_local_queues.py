"""The local stack's reading of queues and event source mappings, and the poller's pure parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local_stack.queues import batch_failures, local_queue_name, sqs_event_record
from local_stack.terraform import (
    TerraformError,
    TerraformModel,
    event_source_mappings,
    load_model,
    queue_specs,
)

REPO = Path(__file__).resolve().parents[2]
QUEUES_TF = REPO / "tests" / "integration" / "terraform" / "queues"


def model(tmp_path: Path, extra: str = "") -> TerraformModel:
    (tmp_path / "extra.tf").write_text(extra)
    return load_model([REPO / "terraform", QUEUES_TF, tmp_path])


def test_queues_are_read_with_their_attributes_and_variables(tmp_path: Path) -> None:
    specs = queue_specs(model(tmp_path), {"jobs_visibility_timeout": 7})
    jobs = specs["jobs"]
    assert (jobs.name, jobs.visibility_timeout_s, jobs.message_retention_s) == ("ws-chat-jobs", 7, 3600)
    assert (jobs.dead_letter_queue, jobs.max_receive_count) == ("jobs_dlq", 2)
    assert specs["jobs_dlq"].visibility_timeout_s == 30  # SQS's default
    assert local_queue_name(jobs, 3001) == "ws-chat-jobs-3001"


def test_arithmetic_on_locals_is_evaluated(tmp_path: Path) -> None:
    extra = """
    locals { jobs_visibility = 6 * local.functions.t_batch.timeout + 1 }
    resource "aws_sqs_queue" "other" {
      name = "other"
      visibility_timeout_seconds = local.jobs_visibility
      delay_seconds              = max(2, min(var.jobs_max_receive_count, 9))
    }
    """
    other = queue_specs(model(tmp_path, extra), {"jobs_max_receive_count": "5"})["other"]
    assert (other.visibility_timeout_s, other.delay_s) == (13, 5)  # a -var text takes its number type


def test_mappings_are_read_from_the_terraform(tmp_path: Path) -> None:
    mapping = event_source_mappings(model(tmp_path), {"jobs_batch_size": 3})["jobs"]
    assert (mapping.queue, mapping.function, mapping.batch_size) == ("jobs", "t_batch", 3)
    assert mapping.maximum_concurrency == 2 and mapping.report_batch_item_failures and mapping.enabled


def test_a_function_timeout_above_its_queues_visibility_timeout_is_refused(tmp_path: Path) -> None:
    # t_batch's timeout is 2 s: Lambda's CreateEventSourceMapping refuses a queue visibility below it
    with pytest.raises(TerraformError) as refused:
        event_source_mappings(model(tmp_path), {"jobs_visibility_timeout": 1})
    assert str(refused.value) == (
        "aws_lambda_event_source_mapping.jobs: aws_sqs_queue.jobs has visibility_timeout_seconds = 1, "
        "below local.functions.t_batch.timeout = 2; Lambda refuses such a mapping (a function's timeout "
        "must be at most its queue's visibility timeout), so Terraform's apply would fail"
    )
    assert event_source_mappings(model(tmp_path), {"jobs_visibility_timeout": 2})["jobs"]  # equal: allowed


def test_the_modules_own_fanout_mapping_is_one_aws_allows() -> None:
    real = load_model([REPO / "terraform"])
    mapping = event_source_mappings(real)["fanout"]
    assert real.functions["fanout"].timeout <= queue_specs(real)[mapping.queue].visibility_timeout_s


def test_a_mapping_names_its_function_by_its_key(tmp_path: Path) -> None:
    extra = """
    resource "aws_lambda_event_source_mapping" "stray" {
      event_source_arn = aws_sqs_queue.jobs.arn
      function_name    = aws_lambda_function.this["elsewhere"].arn
    }
    resource "aws_lambda_event_source_mapping" "odd" {
      event_source_arn = aws_sqs_queue.jobs.arn
      function_name    = var.some_arn
    }
    """
    with pytest.raises(TerraformError, match=r"odd\.function_name"):
        event_source_mappings(model(tmp_path, extra))
    extra = extra[: extra.index('    resource "aws_lambda_event_source_mapping" "odd"')]
    assert (
        event_source_mappings(model(tmp_path, extra))["stray"].function == "elsewhere"
    )  # not run: not polled


def test_an_unevaluable_value_is_an_error_not_a_guess(tmp_path: Path) -> None:
    extra = 'resource "aws_sqs_queue" "odd" {\n  visibility_timeout_seconds = var.missing\n}\n'
    with pytest.raises(TerraformError, match=r"odd\.visibility_timeout_seconds"):
        queue_specs(model(tmp_path, extra))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ('"arn:aws:sqs:us-east-1:1:x"', "deadLetterTargetArn must be aws_sqs_queue.<name>.arn"),
        ("aws_sqs_queue.jobs.url", "deadLetterTargetArn must be aws_sqs_queue.<name>.arn"),
        ("aws_sqs_queue.nowhere.arn", "aws_sqs_queue.nowhere is not defined"),
    ],
)
def test_a_redrive_policy_names_a_queue_of_the_module(tmp_path: Path, target: str, message: str) -> None:
    extra = f"""
    resource "aws_sqs_queue" "odd" {{
      redrive_policy = jsonencode({{ deadLetterTargetArn = {target}, maxReceiveCount = 3 }})
    }}
    """
    with pytest.raises(TerraformError, match=message):
        queue_specs(model(tmp_path, extra))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", set()),
        (b"null", set()),
        (b"{}", set()),
        (b'{"batchItemFailures": []}', set()),
        (b'{"batchItemFailures": null}', set()),
        (b'{"batchItemFailures": [{"itemIdentifier": "b"}]}', {"b"}),
        (b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}', None),  # not in the batch
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', None),
        (b'{"batchItemFailures": [{"itemIdentifier": null}]}', None),
        (b'{"batchItemFailures": [{"id": "b"}]}', None),
        (b'{"batchItemFailures": "b"}', None),
        (b"not json", None),
    ],
)
def test_batch_item_failures_follow_lambdas_rules(payload: bytes, expected: set[str] | None) -> None:
    assert batch_failures(payload, ["a", "b"]) == expected


def test_the_record_has_lambdas_shape() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "rh",
        "Body": json.dumps({"x": 1}),
        "MD5OfBody": "md5",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1", "SenderId": "s",
                       "ApproximateFirstReceiveTimestamp": "2"},
        "MessageAttributes": {"b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
    }  # fmt: skip
    record = sqs_event_record(message, queue_arn="arn:aws:sqs:us-east-1:1:q", region="us-east-1")
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["b"] == {
        "binaryValue": "AAE=",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Binary",
    }
    assert (record["eventSource"], record["eventSourceARN"]) == ("aws:sqs", "arn:aws:sqs:us-east-1:1:q")
