"""Fuzzing with hypothesis: arbitrary frames into the message routes, arbitrary query strings into
``$connect``: only contract statuses and error codes come out, never an uncaught exception, never a
broadcast of an invalid message. State is built once per test and reset by each example (hence the
function-scoped-fixture health check is suppressed)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from local_stack.testing import FakeContext, FakeManagementApi, make_token
from shared.protocol import ErrorCode
from tests.conftest import load_function
from tests.reliability import summary
from tests.support.events import connect_event, message_event
from tests.support.records import TABLE, record_ids

ROOM = "general"
SENDER, WITNESS, STRANGER = "SENDERxxxxxxxx0=", "WITNESSxxxxxxx0=", "STRANGERxxxxxx0="
MAX_BYTES = 4096
ERROR_CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value}
ROOM_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

chars = st.one_of(st.characters(), st.characters(categories=["Cs"]))  # lone surrogates included
texts = st.text(alphabet=chars, max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
messages = st.one_of(
    texts,
    json_values,
    st.sampled_from(["", " ", "\t\n", "\u3000", "\u200b", "ok", "\x00", "\ud800", "a\udfffb"]),
    st.builds(lambda n, c: c * n, st.integers(min_value=4090, max_value=4100), st.sampled_from(["a", "é"])),
    st.builds(lambda n: "€" * n, st.integers(min_value=1364, max_value=1367)),  # 3 bytes each: 4092..4101
)
frames = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.just("sendMessage"), json_values),
        "room_id": st.one_of(
            st.just(ROOM), st.sampled_from(["other", "General", "general\n", ""]), json_values
        ),
        "message": messages,
        "extra": json_values,
    },
)


def _nest(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"action":"sendMessage","message":"hi","x":' + "[" * depth + "]" * depth + "}"


bodies = st.one_of(
    frames.map(json.dumps),  # lone surrogates arrive escaped, as a real client sends them
    frames.map(lambda f: json.dumps(f, ensure_ascii=False)),
    st.builds(lambda f: json.dumps({"action": "sendMessage", **f}), frames),
    st.builds(lambda m: json.dumps({"action": "sendMessage", "message": m}), st.text(min_size=1)),
    st.builds(
        lambda m: json.dumps({"action": "sendMessage", "room_id": ROOM, "message": m}, ensure_ascii=False),
        st.text(alphabet=chars, min_size=1),
    ),
    texts,
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.builds(
        _nest, st.integers(min_value=1, max_value=200_000), st.sampled_from(["array", "object", "deep"])
    ),
    st.builds(
        lambda digits, where: where.replace("N", "9" * digits),
        st.integers(min_value=1, max_value=20_000),
        st.sampled_from(
            [
                '{"action":"sendMessage","message":N}',
                '{"action":"sendMessage","message":"hi","room_id":N}',
                '{"action":N,"message":"hi"}',
                '{"action":"sendMessage","message":-N.N}',
            ]
        ),
    ),
    st.sampled_from(
        [
            "",
            "null",
            "[]",
            '"sendMessage"',
            "1e999",
            '{"action":"sendMessage","message":1e999}',
            '{"action":"sendMessage","message":NaN}',
            '{"action":"sendMessage","message":"\\ud800"}',
            '{"action":"sendMessage","message":"\\udfff\\ud800"}',
            '{"action":"sendMessage","message":"hi","message":5}',
            '{"action":"sendMessage","message":5,"message":"hi"}',
            '{"action":"sendMessage","room_id":null,"message":"hi"}',
            '{"action":"sendMessage","message":"hi"',
            '{"action":"sendMessage","message":"hi"}garbage',
            '\ufeff{"action":"sendMessage","message":"hi"}',
        ]
    ),
)


# Oracles, from docs/protocol.md section 4.
def parsed(body: str) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        frame = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return frame if isinstance(frame, dict) else None


def expected_send(body: str) -> tuple[str, str]:
    """("broadcast", text) or ("error", code)."""
    frame = parsed(body)
    if frame is None:
        return "error", "invalid_json"
    if frame.get("action") != "sendMessage":
        return "error", "unknown_action"
    if "room_id" in frame and frame["room_id"] != ROOM:
        return "error", "forbidden_room"
    text = frame.get("message")
    if not isinstance(text, str) or not text.strip():
        return "error", "invalid_message"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "error", "invalid_message"
    if size > MAX_BYTES:
        return "error", "message_too_large"
    return "broadcast", text


def expected_default(body: str) -> str:
    return "invalid_json" if parsed(body) is None else "unknown_action"


Loader = Callable[[str], Any]


@pytest.fixture
def loaded(dynamodb: Any) -> Loader:
    """``loaded(name)``: the function loaded once per test, not once per example."""
    return cache(load_function)


@pytest.fixture
def room(connected: Callable[..., None], loaded: Loader, monkeypatch: pytest.MonkeyPatch) -> Loader:
    """SENDER (alice) and WITNESS (bob) in the room, STRANGER (bob) elsewhere; the functions' loader."""
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "0")  # one sender fires every example: no per-user limit
    for cid, room_id in ((SENDER, ROOM), (WITNESS, ROOM), (STRANGER, "other")):
        connected(cid, room_id, user="alice" if cid == SENDER else "bob")
    return loaded


def invoke(module: Any, event: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return module.handler(event, FakeContext())
    except Exception:
        summary.record("fuzz", uncaught=1)
        raise


@FUZZ
@given(body=bodies)
@example(body='{"action":"sendMessage","message":"hello"}')
@example(body='{"action":"sendMessage","message":"' + "é" * 2048 + '"}')
@example(body='{"action":"sendMessage","message":"' + "é" * 2049 + '"}')
def test_fuzz_send_message_frames(room: Loader, management_api: FakeManagementApi, body: str) -> None:
    module = room("send_message")
    management_api.reset()
    response = invoke(module, message_event(body, connection_id=SENDER))
    kind, value = expected_send(body)
    to_sender = management_api.frames_to(SENDER)
    to_witness = management_api.frames_to(WITNESS)
    to_stranger = management_api.frames_to(STRANGER)
    broadcast = [f for f in to_witness if f.get("action") == "message"]
    summary.record(
        "fuzz",
        frames=1,
        non_contract=int(
            response is None
            or response.get("statusCode") != 200
            or any(f.get("action") == "error" and f.get("code") not in ERROR_CODES for f in to_sender)
        ),
        invalid_broadcasts=int(kind == "error" and bool(broadcast or to_stranger)),
        valid_broadcasts=int(kind == "broadcast" and len(broadcast) == 1),
    )
    assert response == {"statusCode": 200}
    assert to_stranger == []
    if kind == "broadcast":
        [frame] = to_sender
        assert to_witness == [frame]
        assert frame["action"] == "message" and frame["message"] == value and frame["room_id"] == ROOM
        assert frame["user_id"] == "alice"
    else:
        assert to_witness == []
        [frame] = to_sender
        assert frame["action"] == "error" and frame["code"] == value, (frame, body[:200])
        assert isinstance(frame["message"], str) and frame["message"]


@FUZZ
@given(body=bodies)
def test_fuzz_default_route_frames(room: Loader, management_api: FakeManagementApi, body: str) -> None:
    module = room("default")
    management_api.reset()
    response = invoke(module, message_event(body, connection_id=SENDER, route="$default"))
    to_sender = management_api.frames_to(SENDER)
    summary.record(
        "fuzz",
        frames=1,
        non_contract=int(
            response != {"statusCode": 200} or [f.get("code") for f in to_sender] != [expected_default(body)]
        ),
        invalid_broadcasts=int(bool(management_api.frames_to(WITNESS))),
    )
    assert response == {"statusCode": 200}
    assert [f["code"] for f in to_sender] == [expected_default(body)]
    assert management_api.frames_to(WITNESS) == []


@pytest.mark.parametrize("route", ["$default", "sendMessage"])
def test_fuzz_lone_surrogate_action_gets_unknown_action(
    room: Loader, management_api: FakeManagementApi, route: str
) -> None:
    module = room("default" if route == "$default" else "send_message")
    # API Gateway routes this frame to $default: "\ud800" matches no route key.
    response = module.handler(
        message_event('{"action":"\\ud800"}', connection_id=SENDER, route=route), FakeContext()
    )
    assert response == {"statusCode": 200}
    assert [f["code"] for f in management_api.frames_to(SENDER)] == ["unknown_action"]


GOOD = make_token("alice")
LIMITED = make_token("alice", rooms=["general", "ops"])
TOKENS = {GOOD: None, LIMITED: {"general", "ops"}}

query_values = st.one_of(
    texts,
    st.sampled_from([GOOD, LIMITED, "", "general", "ops", "alice", "x" * 64, "x" * 65, "general\n"]),
    st.from_regex(ROOM_PATTERN, fullmatch=True),
    st.builds(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), st.sampled_from([GOOD, LIMITED])),
)
queries = st.dictionaries(
    st.one_of(st.sampled_from(["token", "room_id", "user_id"]), st.text(max_size=8)), query_values, max_size=5
)
protocols = st.one_of(
    st.none(),
    texts,
    st.builds(lambda t, extra: f"chat.v1, bearer.{t}{extra}", st.sampled_from([GOOD, LIMITED, "x"]), texts),
)


def expected_connect(query: dict[str, str], protocol: str | None) -> int:
    offered = [p.strip() for p in (protocol or "").split(",") if p.strip()]
    bearer = next((p[len("bearer.") :] for p in offered if p.startswith("bearer.")), None)
    token = query.get("token") or bearer
    if token not in TOKENS:
        return 401
    room_id = query.get("room_id")
    if not isinstance(room_id, str) or not ROOM_PATTERN.fullmatch(room_id):
        return 400
    if "user_id" in query and query["user_id"] != "alice":
        return 403
    rooms = TOKENS[token]
    if rooms is not None and room_id not in rooms:
        return 403
    return 200


@FUZZ
@given(query=st.one_of(st.none(), queries), protocol=protocols)
def test_fuzz_connect_query_strings(
    dynamodb: Any, loaded: Loader, query: dict[str, str] | None, protocol: str | None
) -> None:
    module = loaded("connect")
    for cid in record_ids(dynamodb):
        dynamodb.delete_item(TableName=TABLE, Key={"connection_id": {"S": cid}})
    headers = {"Sec-WebSocket-Protocol": protocol} if protocol is not None else None
    response = invoke(module, connect_event(query, headers=headers))
    status = expected_connect(query or {}, protocol)
    stored = dynamodb.scan(TableName=TABLE)["Items"]
    summary.record(
        "fuzz", connects=1, non_contract=int(response is None or response.get("statusCode") != status)
    )
    assert response is not None and response["statusCode"] == status, (response, query, protocol)
    if status == 200:
        [item] = stored
        assert item["user_id"]["S"] == "alice" and item["room_id"]["S"] == (query or {}).get("room_id")
    else:
        assert stored == []
