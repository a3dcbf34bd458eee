"""shared/deadline.py: no AWS call attempt starts that could end past the invocation's deadline."""

from __future__ import annotations

from typing import Any

import pytest

from local_stack.testing import FakeContext
from shared import deadline
from shared.connections import dynamodb_client
from tests.support.records import TABLE, records


def item(cid: str = "AAAAAAAAAAAAAA0=") -> dict[str, Any]:
    return {"connection_id": {"S": cid}, "room_id": {"S": "r"}, "user_id": {"S": "u"}, "ttl": {"N": "1"}}


@pytest.mark.parametrize(
    ("seconds", "margin", "runs"),
    [(2.9, 0, False), (4.0, 0.5, True), (3.4, 0.5, False)],
    ids=["cannot-finish-in-time-never-starts", "fits-runs", "margin-is-kept-free"],
)
def test_attempt_starts_only_when_it_can_end_before_the_margin(
    dynamodb: Any, seconds: float, margin: float, runs: bool
) -> None:
    """The client's timeouts (1 s connect + 2 s read) must fit in the time left less the margin."""
    client = dynamodb_client(connect_timeout=1, read_timeout=2)
    with deadline.invocation(FakeContext(seconds=seconds), margin_seconds=margin):
        if runs:
            client.put_item(TableName=TABLE, Item=item())
        else:
            with pytest.raises(deadline.DeadlineExceeded):
                client.put_item(TableName=TABLE, Item=item())
    assert len(records(dynamodb)) == int(runs)  # a refused attempt is refused before it is sent


def test_reserve_keeps_time_for_what_follows(dynamodb: Any) -> None:
    client = dynamodb_client(connect_timeout=1, read_timeout=2)
    with deadline.invocation(FakeContext(seconds=5), margin_seconds=0):
        with deadline.reserve(3), pytest.raises(deadline.DeadlineExceeded):
            client.put_item(TableName=TABLE, Item=item())
        client.put_item(TableName=TABLE, Item=item())  # the reserve is back once the block ends
        left = deadline.remaining()
        assert left is not None and 4 < left <= 5
    assert deadline.remaining() is None


def test_no_deadline_outside_an_invocation(dynamodb: Any) -> None:
    assert deadline.current() is None
    with deadline.reserve(100):
        dynamodb_client().put_item(TableName=TABLE, Item=item())
    assert len(records(dynamodb)) == 1


def test_decorator_sets_the_deadline_for_the_handler() -> None:
    seen: list[float | None] = []

    @deadline.aws_deadline(margin_seconds=1)
    def handler(event: Any, context: Any) -> None:
        seen.append(deadline.remaining())

    handler({}, FakeContext(seconds=4))
    assert seen[0] is not None and 2.5 < seen[0] <= 3
    assert deadline.remaining() is None
