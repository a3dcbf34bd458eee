"""The embedded DynamoDB keeps connections alive: a function's botocore pool reuses them."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.dynamodb import EmbeddedDynamoDB, dynamodb_client
from tests.support.tables import create_messages_table

pytestmark = pytest.mark.timeout(60)

TABLE = "speed_messages"


@pytest.fixture
def server() -> Iterator[EmbeddedDynamoDB]:
    embedded = EmbeddedDynamoDB()
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
def db(server: EmbeddedDynamoDB) -> Any:
    client = dynamodb_client(server.endpoint, "us-east-1")
    create_messages_table(client, TABLE)
    return client


def _raw_request(target: str, body: dict[str, Any], *, chunked: bool = False) -> bytes:
    payload = json.dumps(body).encode()
    head = [
        "POST / HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/x-amz-json-1.0",
        f"X-Amz-Target: DynamoDB_20120810.{target}",
        "Authorization: AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host, Signature=0",
    ]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    else:
        head.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def _read_responses(sock: socket.socket, count: int) -> list[tuple[str, dict[str, str], bytes]]:
    """``count`` HTTP responses framed by their Content-Length, read from one socket."""
    buffer = b""
    responses = []
    while len(responses) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(responses)} of {count} responses"
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers["content-length"])
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside a body"
            buffer += chunk
        responses.append((status, headers, buffer[:length]))
        buffer = buffer[length:]
    return responses


def test_a_client_reuses_one_connection_for_many_calls(server: EmbeddedDynamoDB, db: Any) -> None:
    # werkzeug's own handler answers "Connection: close": every call was a new TCP connection and thread
    for i in range(20):
        db.put_item(TableName=TABLE, Item={"room_id": {"S": "r"}, "message_id": {"S": f"m{i}"}})
        assert db.get_item(TableName=TABLE, Key={"room_id": {"S": "r"}, "message_id": {"S": f"m{i}"}})["Item"]
    assert server.accepted_connections == 1  # the table's creation, 20 puts and 20 gets


def test_errors_and_large_pages_keep_the_connection_usable(server: EmbeddedDynamoDB, db: Any) -> None:
    big = "x" * 300_000
    for i in range(5):
        db.put_item(
            TableName=TABLE, Item={"room_id": {"S": "big"}, "message_id": {"S": f"m{i}"}, "v": {"S": big}}
        )
    with pytest.raises(ClientError) as refused:
        db.put_item(
            TableName=TABLE,
            Item={"room_id": {"S": "big"}, "message_id": {"S": "m0"}},
            ConditionExpression="attribute_not_exists(room_id)",
        )
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as invalid:
        db.get_item(TableName=TABLE, Key={"room_id": {"S": "big"}})
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    pages = list(
        db.get_paginator("query").paginate(
            TableName=TABLE,
            KeyConditionExpression="room_id = :r",
            ExpressionAttributeValues={":r": {"S": "big"}},
        )
    )
    assert sum(len(p["Items"]) for p in pages) == 5 and len(pages) == 2  # 1 MB pages
    assert all(item["v"]["S"] == big for p in pages for item in p["Items"])
    assert server.accepted_connections == 1


def test_two_requests_sent_back_to_back_get_two_answers(server: EmbeddedDynamoDB, db: Any) -> None:
    # werkzeug's handler drains the socket after each answer and closes it: the second request was lost
    host, port = server.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_raw_request("ListTables", {}) + _raw_request("DescribeTable", {"TableName": TABLE}))
        (first, _, listed), (second, _, described) = _read_responses(sock, 2)
    # other stacks of this process may be up: moto's tables are per process, so TABLE is among theirs
    assert first.endswith("200 OK") and TABLE in json.loads(listed)["TableNames"]
    assert second.endswith("200 OK") and json.loads(described)["Table"]["TableName"] == TABLE


def test_a_chunked_request_is_answered_and_its_connection_closed(server: EmbeddedDynamoDB, db: Any) -> None:
    host, port = server.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_raw_request("ListTables", {}, chunked=True))
        ((status, headers, body),) = _read_responses(sock, 1)
        assert status.endswith("200 OK") and TABLE in json.loads(body)["TableNames"]
        assert headers.get("connection") == "close"
        assert sock.recv(1) == b""


def test_stop_closes_kept_alive_connections() -> None:
    embedded = EmbeddedDynamoDB()
    host, port = embedded.start().removeprefix("http://").split(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(_raw_request("ListTables", {}))
        ((status, _, _),) = _read_responses(sock, 1)
        assert status.endswith("200 OK")
    finally:
        embedded.stop()
    with sock:
        assert sock.recv(1) == b""  # the server's thread for it ended instead of waiting for a next request


def test_moto_looks_up_the_service_of_a_host_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto's dispatcher walked its package folder and URL patterns on every request (~0.4 ms each)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    lookups: list[str | None] = []
    real = DomainDispatcherApplication.get_backend_for_host

    def counted(self: Any, host: str | None) -> Any:
        lookups.append(host)
        return real(self, host)

    monkeypatch.setattr(DomainDispatcherApplication, "get_backend_for_host", counted)
    embedded = EmbeddedDynamoDB()
    try:
        db = dynamodb_client(embedded.start(), "us-east-1")
        for _ in range(10):
            assert isinstance(db.list_tables()["TableNames"], list)
    finally:
        embedded.stop()
    assert len(lookups) == 2 and lookups[0] is None  # the first request only: no host, then the inferred one


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "room_id = :r", "ExpressionAttributeValues": {":r": {"S": "r1"}}},
    {"KeyConditionExpression": "room_id = :r", "ExpressionAttributeValues": {":r": {"S": "nobody"}}},
    {
        "KeyConditionExpression": "room_id = :r AND begins_with(#m, :u)",
        "ExpressionAttributeNames": {"#m": "member"},
        "ExpressionAttributeValues": {":r": {"S": "r1"}, ":u": {"S": "u1"}},
        "ScanIndexForward": False,
    },
    {
        "KeyConditionExpression": "room_id = :r AND #m > :m",
        "FilterExpression": "#n <> :n",
        "ProjectionExpression": "#m, #n",
        "ExpressionAttributeNames": {"#m": "member", "#n": "name"},
        "ExpressionAttributeValues": {":r": {"S": "r2"}, ":m": {"S": "u05"}, ":n": {"S": "name 7"}},
    },
]


def _all_pages(db: Any, table: str, query: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
    pages, start = [], None
    for _ in range(100):
        page = db.query(
            TableName=table,
            **query,
            **({"Limit": limit} if limit else {}),
            **({"ExclusiveStartKey": start} if start else {}),
        )
        pages.append({key: page.get(key) for key in ("Items", "Count", "ScannedCount", "LastEvaluatedKey")})
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages
    raise AssertionError("no last page")


def test_a_query_answers_what_moto_answers_and_reads_only_its_partition(
    server: EmbeddedDynamoDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models import Table

    from tests.support.tables import create_connections_table, create_memberships_table

    db = dynamodb_client(server.endpoint, "us-east-1")
    create_memberships_table(db, "speed_members")
    create_connections_table(db, "speed_connections")
    for room in ("r1", "r2", "r3"):
        for i in range(12):
            item = {"room_id": {"S": room}, "member": {"S": f"u{i:02d}#c{i}"}, "name": {"S": f"name {i}"}}
            db.put_item(TableName="speed_members", Item=item)
    for i in range(5):
        db.put_item(TableName="speed_connections", Item={"connection_id": {"S": f"c{i}"}, "n": {"N": str(i)}})
    cases = [("speed_members", q, limit) for q in QUERIES for limit in (None, 5)]
    cases.append(
        (
            "speed_connections",
            {
                "KeyConditionExpression": "connection_id = :c",
                "ExpressionAttributeValues": {":c": {"S": "c3"}},
            },
            None,
        )
    )
    ours = [_all_pages(db, *case) for case in cases]

    # moto's own query, through the table's original method (kept in the wrapper's closure)
    patched = Table.query
    original = next(c.cell_contents for c in patched.__closure__ if callable(c.cell_contents))
    monkeypatch.setattr(Table, "query", original)
    assert [_all_pages(db, *case) for case in cases] == ours
    assert [sum(len(page["Items"]) for page in pages) for pages in ours[:4]] == [12, 12, 0, 0]
    assert any(page["ScannedCount"] != page["Count"] for pages in ours for page in pages)  # a filter ran

    # the partition alone: moto's all_items (every item of the table, sorted) is not called
    monkeypatch.setattr(Table, "query", patched)
    read_all: list[str] = []
    real_all_items = Table.all_items
    monkeypatch.setattr(Table, "all_items", lambda self: read_all.append(self.name) or real_all_items(self))
    assert _all_pages(db, *cases[0]) == ours[0]
    assert read_all == []


def test_the_e2e_bench_times_moto_s_query_of_a_room(server: EmbeddedDynamoDB) -> None:
    from bench.e2e import query_times
    from bench.env import MEMBERSHIPS_TABLE
    from tests.support.tables import create_memberships_table

    db = dynamodb_client(server.endpoint, "us-east-1")
    create_memberships_table(db, MEMBERSHIPS_TABLE)
    for i in range(3):
        db.put_item(
            TableName=MEMBERSHIPS_TABLE, Item={"room_id": {"S": "bench"}, "member": {"S": f"u{i}#c{i}"}}
        )
    db.put_item(TableName=MEMBERSHIPS_TABLE, Item={"room_id": {"S": "other"}, "member": {"S": "u9#c9"}})
    timed = query_times(server.endpoint, "bench", repeats=2)
    assert timed["items"] == 3 and timed["repeats"] == 2
    assert timed["http_ms"] > 0 and timed["botocore_ms"] > 0


def test_the_e2e_bench_query_probe_never_times_an_error_answer(
    server: EmbeddedDynamoDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.client

    from bench.e2e import query_times
    from bench.env import MEMBERSHIPS_TABLE
    from tests.support.tables import create_memberships_table

    create_memberships_table(dynamodb_client(server.endpoint, "us-east-1"), MEMBERSHIPS_TABLE)
    real_request = http.client.HTTPConnection.request

    def missing_table(self: Any, method: str, url: str, body: Any = None, headers: Any = None) -> None:
        real_request(
            self, method, url, body=body.replace(MEMBERSHIPS_TABLE, "no_such_table"), headers=headers
        )

    monkeypatch.setattr(http.client.HTTPConnection, "request", missing_table)  # the raw probe's only
    with pytest.raises(RuntimeError, match=r"Query answered 400.*ResourceNotFound"):
        query_times(server.endpoint, "bench", repeats=1)


def _connect(server: EmbeddedDynamoDB) -> socket.socket:
    host, port = server.endpoint.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_a_client_s_connection_close_is_answered_with_close(server: EmbeddedDynamoDB, db: Any) -> None:
    request = _raw_request("ListTables", {}).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    with _connect(server) as sock:
        sock.sendall(request)
        ((status, headers, _),) = _read_responses(sock, 1)
        assert status.endswith("200 OK") and headers.get("connection") == "close"
        assert sock.recv(1) == b""


def test_an_http_1_0_client_asking_keep_alive_is_told_it_is_kept(server: EmbeddedDynamoDB, db: Any) -> None:
    # without "Connection: keep-alive" in the answer an HTTP/1.0 client takes it as closed after it
    request = (
        _raw_request("ListTables", {})
        .replace(b"HTTP/1.1", b"HTTP/1.0", 1)
        .replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1)
    )
    with _connect(server) as sock:
        sock.sendall(request + request)
        answers = _read_responses(sock, 2)
    assert [headers.get("connection") for _, headers, _ in answers] == ["keep-alive", "keep-alive"]


def test_a_body_shorter_than_its_length_is_not_run(server: EmbeddedDynamoDB, db: Any) -> None:
    # the client died inside its body: what arrived must not reach moto (it was answered as a request)
    item = {"room_id": {"S": "r"}, "message_id": {"S": "cut"}}
    request = _raw_request("PutItem", {"TableName": TABLE, "Item": item})
    head, body = request.split(b"\r\n\r\n", 1)
    head = head.replace(b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 50))
    with _connect(server) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""
    assert "Item" not in db.get_item(TableName=TABLE, Key=item)


def test_a_huge_content_length_is_not_allocated_up_front(
    server: EmbeddedDynamoDB, db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # rfile.read(n) allocates n bytes first: a lying length was a MemoryError traceback (or gigabytes held)
    request = _raw_request("ListTables", {}).replace(b"Content-Length: 2", b"Content-Length: 100000000000000")
    with _connect(server) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""
    assert db.list_tables()["TableNames"]  # the server still answers
    assert "MemoryError" not in capsys.readouterr().err


def test_a_connection_accepted_as_the_server_stops_is_closed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # stop() closed the connections known then: one whose thread had not yet reached setup() was kept open
    import threading

    from local_stack import dynamodb

    entered, release = threading.Event(), threading.Event()
    real_setup = dynamodb._KeepAliveHandler.setup

    def late_setup(self: Any) -> None:
        entered.set()
        release.wait(10)
        real_setup(self)

    monkeypatch.setattr(dynamodb._KeepAliveHandler, "setup", late_setup)
    embedded = EmbeddedDynamoDB()
    host, port = embedded.start().removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=3)
    try:
        assert entered.wait(10)
        embedded.stop()
    finally:
        release.set()
    with sock:
        assert sock.recv(1) == b""  # not a thread waiting for this connection's first request


def test_an_exception_in_moto_is_a_500_and_the_connection_stays_usable(
    server: EmbeddedDynamoDB, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.responses import DynamoHandler

    def broken(self: Any) -> str:
        raise RuntimeError("moto broke")

    with _connect(server) as sock:
        monkeypatch.setattr(DynamoHandler, "list_tables", broken)
        sock.sendall(_raw_request("ListTables", {}))
        ((status, _, _),) = _read_responses(sock, 1)
        monkeypatch.undo()
        sock.sendall(_raw_request("ListTables", {}))
        ((again, _, listed),) = _read_responses(sock, 1)
    assert status.startswith("HTTP/1.1 500") and again.endswith("200 OK")
    assert TABLE in json.loads(listed)["TableNames"]


CAPACITY_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("PutItem", {"Item": {"room_id": {"S": "r"}, "message_id": {"S": "1"}, "n": {"N": "1.50"}}}),
    (
        "PutItem",
        {
            "Item": {"room_id": {"S": "r"}, "message_id": {"S": "1"}, "s": {"SS": ["b", "a"]}},
            "ReturnValues": "ALL_OLD",
        },
    ),
    ("GetItem", {"Key": {"room_id": {"S": "r"}, "message_id": {"S": "1"}}}),
    (
        "UpdateItem",
        {
            "Key": {"room_id": {"S": "r"}, "message_id": {"S": "1"}},
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ReturnValues": "ALL_NEW",
        },
    ),
    ("Query", {"KeyConditionExpression": "room_id = :r", "ExpressionAttributeValues": {":r": {"S": "r"}}}),
    ("Scan", {}),
    ("DeleteItem", {"Key": {"room_id": {"S": "r"}, "message_id": {"S": "1"}}, "ReturnValues": "ALL_OLD"}),
    ("GetItem", {"Key": {"room_id": {"S": "r"}, "message_id": {"S": "1"}}}),
]


def _answers(server: EmbeddedDynamoDB, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, bytes]]:
    """The answers to ``calls``, sent on one connection after the item they touch is deleted."""
    sock = _connect(server)
    try:
        for target, body in [
            ("DeleteItem", {"Key": {"room_id": {"S": "r"}, "message_id": {"S": "1"}}}),
            *calls,
        ]:
            sock.sendall(_raw_request(target, {"TableName": TABLE, **body}))
        return [(status, body) for status, _, body in _read_responses(sock, len(calls) + 1)[1:]]
    finally:
        sock.close()


@pytest.mark.parametrize("capacity", [None, "NONE", "TOTAL", "INDEXES", "SOME"])
def test_an_answer_is_moto_s_own_without_parsing_it_twice(
    server: EmbeddedDynamoDB, db: Any, monkeypatch: pytest.MonkeyPatch, capacity: str | None
) -> None:
    """Asked for no consumed capacity, moto's answer is sent as its operation built it, not parsed and
    serialised again; the bytes are the same as through moto's own decorator, which still answers a
    request that asks for capacity (or names a wrong value)."""
    from moto.dynamodb import responses

    calls = [(t, {**b, "ReturnConsumedCapacity": capacity} if capacity else b) for t, b in CAPACITY_CALLS]
    parsed: list[int] = []
    real_json = responses.json

    class CountingJson:
        dumps = staticmethod(real_json.dumps)

        @staticmethod
        def loads(text: Any, **kwargs: Any) -> Any:
            if sys._getframe(1).f_code.co_qualname.startswith("include_consumed_capacity."):
                parsed.append(len(text))  # the decorator parsing an answer (not a request's body)
            return real_json.loads(text, **kwargs)

    monkeypatch.setattr(responses, "json", CountingJson)
    ours = _answers(server, calls)
    # the round trip runs only for a request that asks (a wrong value is refused before it)
    assert bool(parsed) is (capacity in ("TOTAL", "INDEXES"))
    for name, method in list(vars(responses.DynamoHandler).items()):
        if getattr(method, "__kwdefaults__", None) and "_decorated" in method.__kwdefaults__:
            monkeypatch.setattr(responses.DynamoHandler, name, method.__kwdefaults__["_decorated"])
    monkeypatch.setattr(responses, "json", real_json)
    assert _answers(server, calls) == ours  # moto's own path, the same table state again
    if capacity in ("TOTAL", "INDEXES"):
        assert all(b'"ConsumedCapacity"' in body for _, body in ours)
    if capacity == "SOME":  # refused by moto's decorator; UpdateItem, which it does not wrap, is answered
        refused = [status.split()[1] == "400" and b"ValidationException" in body for status, body in ours]
        assert refused == [target != "UpdateItem" for target, _ in calls]
