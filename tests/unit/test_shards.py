"""Shard planning: sizes, every member in exactly one job, the byte bound, and decoding a job body."""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.shards import (
    MAX_JOB_BYTES,
    BadJob,
    JobTooLarge,
    ShardJob,
    ShardMember,
    decode_job,
    encode_job,
    plan_shards,
    retry_delay,
)

ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"
DATA = json.dumps(
    {"action": "message", "room_id": "live", "message": "h\u00e9llo \U0001f600"}, ensure_ascii=False
)


def plan(
    members: list[ShardMember], shard_size: int, max_bytes: int = MAX_JOB_BYTES, data: str = DATA
) -> list[ShardJob]:
    jobs = plan_shards(
        endpoint=ENDPOINT,
        room_id="live",
        message_id="01JMSG",
        data=data,
        members=members,
        shard_size=shard_size,
        max_bytes=max_bytes,
    )
    return list(jobs)


def members(n: int, user: str = "u") -> list[ShardMember]:
    return [ShardMember(f"C{i:015d}=", f"{user}{i}", 1_764_000_000 + i) for i in range(n)]


def test_a_room_is_cut_into_jobs_of_at_most_the_shard_size_in_order() -> None:
    jobs = plan(members(10), 4)
    assert [len(job.members) for job in jobs] == [4, 4, 2]
    assert [m for job in jobs for m in job.members] == members(10)
    assert {(job.endpoint, job.room_id, job.message_id, job.data) for job in jobs} == {
        (ENDPOINT, "live", "01JMSG", DATA)
    }


def test_an_empty_room_plans_no_job() -> None:
    assert plan([], 5) == []


def test_a_job_is_cut_by_bytes_before_its_count() -> None:
    long = members(40, user="x" * 128)  # about 160 bytes each
    jobs = plan(long, 1000, max_bytes=2000)
    assert len(jobs) > 1
    assert all(len(encode_job(job)) <= 2000 for job in jobs)
    assert [m for job in jobs for m in job.members] == long


def test_a_job_of_the_largest_shard_size_with_long_ids_stays_under_sqs_limit() -> None:
    jobs = plan(members(20_000, user="x" * 128), 20_000)
    assert all(len(encode_job(job)) <= MAX_JOB_BYTES < 256 * 1024 for job in jobs)
    assert sum(len(job.members) for job in jobs) == 20_000


def test_a_member_that_cannot_fit_any_job_is_refused() -> None:
    with pytest.raises(ValueError, match="alone does not fit"):
        plan(members(1, user="x" * 500), 10, max_bytes=len(DATA) + 300)


def test_the_job_body_is_ascii_whatever_the_frame() -> None:
    [job] = plan(members(2), 10)
    body = encode_job(job)
    assert body.isascii()
    assert decode_job(body) == job


ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    room=st.lists(st.tuples(ids, ids, st.integers(min_value=0, max_value=2**40)), max_size=300),
    shard_size=st.integers(min_value=1, max_value=60),
    # From 1,000: the largest member drawn (two 40-character ids escaped to 6 bytes a character, ~500 bytes)
    # fits in a job with the frame; a member that cannot fit at all is the test above's case.
    max_bytes=st.integers(min_value=1_000, max_value=8000),
)
def test_every_member_is_in_exactly_one_job_of_bounded_size(
    room: list[tuple[str, str, int]], shard_size: int, max_bytes: int
) -> None:
    given_members = [ShardMember(*m) for m in room]
    jobs = plan(given_members, shard_size, max_bytes=max_bytes)
    planned = [m for job in jobs for m in job.members]
    assert planned == given_members  # each once, in order (duplicates in the input stay duplicates)
    for job in jobs:
        assert 1 <= len(job.members) <= shard_size
        body = encode_job(job)
        assert len(body.encode("utf-8")) <= max_bytes
        assert decode_job(body) == job
    # No job was cut early: each but the last was full by count, or the next member would not have fit.
    for job, following in itertools.pairwise(jobs):
        grown = dataclasses.replace(job, members=(*job.members, following.members[0]))
        assert len(job.members) == shard_size or len(encode_job(grown)) >= max_bytes  # one byte of slack


GOOD = {
    "v": 1,
    "endpoint": ENDPOINT,
    "room_id": "live",
    "message_id": "01JMSG",
    "data": DATA,
    "members": [["C1=", "alice", 0]],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"v": 2}, '"v"'),
        ({"endpoint": "ftp://x"}, '"endpoint"'),
        ({"endpoint": None}, '"endpoint"'),
        ({"room_id": ""}, '"room_id"'),
        ({"message_id": 5}, '"message_id"'),
        ({"data": None}, '"data"'),
        ({"members": []}, '"members"'),
        ({"members": "C1="}, '"members"'),
        ({"members": [["C1=", "alice"]]}, '"members[0]"'),
        ({"members": [["C1=", "alice", 0], ["", "bob", 0]]}, '"members[1]"'),
        ({"members": [["C1=", "alice", "0"]]}, '"members[0]"'),
        ({"members": [["C1=", "alice", True]]}, '"members[0]"'),
    ],
)
def test_a_bad_job_names_its_bad_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(BadJob, match=field.replace("[", r"\[").replace("]", r"\]")):
        decode_job(json.dumps({**GOOD, **change}))


@pytest.mark.parametrize("body", ["", "not json", "[1]", "null"])
def test_a_body_that_is_not_a_json_object_is_refused(body: str) -> None:
    with pytest.raises(BadJob, match="shard job"):
        decode_job(body)


def test_a_good_job_decodes() -> None:
    job = decode_job(json.dumps(GOOD))
    assert job.members == (ShardMember("C1=", "alice", 0),)


def test_a_failed_job_comes_back_sooner_each_receive_up_to_a_minute() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 5, 6, 50)] == [2, 4, 8, 16, 32, 60, 60]


def test_a_frame_no_job_can_carry_is_a_domain_error() -> None:
    with pytest.raises(JobTooLarge, match="before any member"):
        plan(members(1), 10, data="\x01" * 40_000)  # 6 bytes each in a job: 240 KB
