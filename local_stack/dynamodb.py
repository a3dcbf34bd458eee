"""The local DynamoDB: moto's server in-process (or any endpoint), the Terraform table, a TTL reaper."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .terraform import TableSpec

__all__ = [
    "DUMMY_CREDENTIALS",
    "EmbeddedDynamoDB",
    "TtlReaper",
    "dynamodb_client",
    "ensure_table",
    "local_table_names",
]

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def dynamodb_client(endpoint: str, region: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
    )


_MUTATING_AND_READING = (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "batch_write_item",
    "batch_get_item",
    "transact_get_items",
    "execute_statement",  # PartiQL reads every table's items: never while a Query narrows one (below)
)
_atomic_lock = threading.RLock()
_atomic_installed = False


def make_moto_dynamodb_atomic() -> None:
    """Make moto's DynamoDB behave like DynamoDB under concurrent requests (the server is threaded).

    moto checks a ``ConditionExpression`` and then writes without a lock, so two concurrent conditional
    writes can both pass; and its ``TransactWriteItems`` deep-copies every table it touches as a backup
    and, when the transaction is cancelled, puts that copy back — slower with every item stored (the
    messages table grows all day under ``make dev``) and erasing whatever other requests wrote meanwhile.
    Here every call is serialized by one lock, and a transaction backs up and restores only its own items.
    Under the same lock a table's Query reads its partition only (:func:`_query_reads_its_partition`), and
    an answer is not parsed and serialised twice (:func:`_no_capacity_round_trip`).
    Idempotent; in-process only (an external ``DYNAMODB_ENDPOINT`` is not touched).
    """
    global _atomic_installed
    with _atomic_lock:
        if _atomic_installed:
            return
        import copy

        from moto.dynamodb import models, responses

        backend_class = models.DynamoDBBackend

        def locked(method: Callable[..., Any]) -> Callable[..., Any]:
            def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                with _atomic_lock:
                    return method(self, *args, **kwargs)

            call.__name__ = method.__name__
            call.__doc__ = method.__doc__
            return call

        for name in _MUTATING_AND_READING:
            setattr(backend_class, name, locked(getattr(backend_class, name)))

        original_transact = backend_class.transact_write_items

        class _NoTableCopies:
            """moto's ``copy`` during one transaction: tables are not copied (their items are, below)."""

            @staticmethod
            def deepcopy(value: Any, memo: Any = None) -> Any:
                return value if isinstance(value, models.Table) else copy.deepcopy(value, memo)

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            with _atomic_lock:
                backups = []
                for entry in transact_items:
                    _, op = next(iter(entry.items()))
                    name = op.get("TableName")
                    if name not in self.tables:
                        continue
                    table = self.tables[name]
                    if "Item" in op:
                        key = {table.hash_key_attr: op["Item"].get(table.hash_key_attr)}
                        if table.range_key_attr is not None:
                            key[table.range_key_attr] = op["Item"].get(table.range_key_attr)
                    else:
                        key = op.get("Key") or {}
                    if any(value is None for value in key.values()):
                        continue
                    before = self.get_item(name, key)
                    backups.append(
                        (name, key, copy.deepcopy(before.to_json()["Attributes"]) if before else None)
                    )
                models.copy = _NoTableCopies  # type: ignore[assignment]
                try:
                    original_transact(self, transact_items)
                except BaseException:
                    for name, key, attributes in reversed(backups):
                        if attributes is None:
                            if self.get_item(name, key) is not None:
                                self.delete_item(name, key)
                        else:
                            self.put_item(name, attributes)
                    raise
                finally:
                    models.copy = copy

        backend_class.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _query_reads_its_partition(models.Table)
        _no_capacity_round_trip(responses.DynamoHandler)
        _atomic_installed = True


def _query_reads_its_partition(table_class: Any) -> None:
    """moto's Query of a table (not an index) sorts every item of the table, then keeps the partition's:
    a third of a 200-member room's Query once the table holds other rooms. The partition's items are the
    same list without the sort (the Query sorts them by range key itself), so ``all_items`` is narrowed to
    them for that call. Safe because the backend's ``query``, ``scan`` and ``execute_statement`` (every
    caller of ``all_items`` the stack can reach) hold :data:`_atomic_lock`."""
    import inspect

    original = table_class.query
    signature = inspect.signature(original)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        hash_key = arguments.get("hash_key")
        if arguments.get("index_name") or hash_key is None:
            return original(self, *args, **kwargs)
        entry = self.items.get(hash_key)  # {range key: item}, or the item of a table without a range key
        partition = [] if entry is None else list(entry.values()) if self.range_key_attr else [entry]
        self.all_items = lambda: partition
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    query.__doc__ = original.__doc__
    table_class.query = query


def _no_capacity_round_trip(handler_class: Any) -> None:
    """moto's ``include_consumed_capacity`` wraps PutItem, GetItem, DeleteItem, Query and Scan: it parses
    the JSON answer the operation built, adds ``ConsumedCapacity`` when the request asked for it, and
    serialises it again. For a request that did not ask (``ReturnConsumedCapacity`` absent or ``NONE``:
    every call the functions make) that round trip changes nothing but costs a share of every Query of a
    room (bench/README.md). Such a request now gets the operation's own answer; one that asks keeps moto's
    path."""
    for name, method in list(vars(handler_class).items()):
        code = getattr(method, "__code__", None)
        if code is None or not code.co_qualname.startswith("include_consumed_capacity."):
            continue

        def answer(handler: Any, *, _decorated: Any = method, _plain: Any = method.__wrapped__) -> Any:
            if handler.body.get("ReturnConsumedCapacity", "NONE") == "NONE":
                return _plain(handler)
            return _decorated(handler)

        functools.update_wrapper(answer, method)
        setattr(handler_class, name, answer)


class _KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's request handler with HTTP/1.1 keep-alive, so botocore's pool reuses its connections.

    werkzeug's own ``run_wsgi`` always answers ``Connection: close`` (and then drains the socket, which
    would swallow the next request of a kept-alive connection), so every DynamoDB call of a function paid a
    new TCP connection and a new server thread. Here a request's body is read whole (by its
    ``Content-Length``) before moto sees it, so the next request starts exactly where this one ends, and the
    answer always carries a ``Content-Length``. A request without a length (chunked; botocore never sends
    one) or a ``HEAD`` goes to werkzeug's own path, which closes the connection after it.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: Nagle would hold the body for an ACK
    server: _KeepAliveServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def _read_body(self, length: int) -> bytes | None:
        """The body, read a MiB at a time (``rfile.read(n)`` allocates ``n`` bytes before it reads, so a
        lying length was a ``MemoryError``); ``None`` when the connection ends before ``length`` bytes."""
        parts: list[bytes] = []
        while length > 0:
            part = self.rfile.read(min(length, 1 << 20))
            if not part:
                return None
            parts.append(part)
            length -= len(part)
        return b"".join(parts)

    def run_wsgi(self) -> None:
        length_header = self.headers.get("Content-Length", "0")
        framed = length_header.isascii() and length_header.isdigit()
        if self.command == "HEAD" or "Transfer-Encoding" in self.headers or not framed:
            super().run_wsgi()
            return
        body = self._read_body(int(length_header))
        if body is None:  # the client went away inside its body: what came is not a request
            self.close_connection = True
            return
        environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        chunks: list[bytes] = []
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            chunks.clear()  # nothing is sent before the app returns: an error page replaces a started body
            started[:] = [status, headers]
            return chunks.append

        try:
            result = self.server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            logging.getLogger("werkzeug").exception("Error on request %s %s", self.command, self.path)
            started.clear()
            chunks[:] = list(InternalServerError()(environ, start_response))
        status, headers = started
        code, _, reason = status.partition(" ")
        payload = b"".join(chunks)
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in _FRAMING_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:  # the client sent "Connection: close", or is HTTP/1.0 without keep-alive
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":  # its keep-alive holds only if the answer says so
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


_FRAMING_HEADERS = frozenset({"content-length", "connection", "transfer-encoding", "keep-alive"})


def _moto_app() -> Any:
    """moto's WSGI application (every service, chosen per request), remembering which service a host is.

    moto's dispatcher looks the service up on every request: a walk over moto's package folder (some 50
    ``stat`` calls) and its URL patterns, about a third of a small ``PutItem``'s CPU. The answer depends on
    the host alone (the one inferred from the signature's credential scope), so it is kept.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class Dispatcher(DomainDispatcherApplication):
        def get_backend_for_host(self, host: str | None) -> Any:
            known: dict[str | None, Any] = self.__dict__.setdefault("_known", {})
            if host in known:
                return known[host]
            backend = super().get_backend_for_host(host)
            if len(known) < 256:
                known[host] = backend
            return backend

    return Dispatcher(create_backend_app)


class _KeepAliveServer(ThreadedWSGIServer):
    """A thread per connection (werkzeug's threaded server), its open connections known so that
    :meth:`close_connections` can end the threads of kept-alive connections at stop."""

    def __init__(self, host: str, port: int, app: Any) -> None:
        super().__init__(host, port, app, _KeepAliveHandler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.accepted = 0  # TCP connections accepted since start (a test counts reuse with it)
        self._closing = False

    def track(self, conn: socket.socket, opened: bool) -> None:
        with self._open_lock:
            if opened:
                self._open.add(conn)
                self.accepted += 1
                if self._closing:  # accepted before the stop, its thread started after it
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
            else:
                self._open.discard(conn)

    def close_connections(self) -> None:
        with self._open_lock:
            self._closing = True
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class EmbeddedDynamoDB:
    """moto's server on a free 127.0.0.1 port, in a thread of this process (made atomic:
    :func:`make_moto_dynamodb_atomic`), with HTTP/1.1 keep-alive (:class:`_KeepAliveHandler`).

    moto keeps its data in module-level backends that every server of the process shares, so when the
    last embedded server of the process stops, its DynamoDB data is dropped: the next stack started in
    the same process (a test suite's next test) begins with empty tables, as a new ``make dev`` does.
    """

    _running = 0
    _count_lock = threading.Lock()

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        make_moto_dynamodb_atomic()

        self._host, self._port = host, port
        self._app = _moto_app()
        self._server: _KeepAliveServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    @property
    def accepted_connections(self) -> int:
        """TCP connections the server accepted since it started."""
        return self._server.accepted if self._server is not None else 0

    def start(self) -> str:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
        self._server = _KeepAliveServer(self._host, self._port, self._app)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="embedded-dynamodb", daemon=True
        )
        self._thread.start()
        with EmbeddedDynamoDB._count_lock:
            EmbeddedDynamoDB._running += 1
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host!s}:{port}"
        return self.endpoint

    def stop(self) -> None:
        if not self.endpoint:
            return
        self.endpoint = ""
        server, thread = self._server, self._thread
        if server is not None:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(5)
        with EmbeddedDynamoDB._count_lock:
            EmbeddedDynamoDB._running -= 1
            if EmbeddedDynamoDB._running == 0:
                from moto.backends import get_backend

                get_backend("dynamodb").reset()


def local_table_names(connections_table: str, resources: Iterable[str]) -> dict[str, str]:
    """The local name of every Terraform table, derived from the connections table's (``--table``):
    ``chat_connections`` gives ``chat_messages``; any other name ``X`` gives ``X_messages``. Two stacks
    sharing one ``DYNAMODB_ENDPOINT`` with different ``--table`` names therefore share no table."""
    stem = connections_table.removesuffix("connections")
    names = {}
    for resource in resources:
        if resource == "connections":
            names[resource] = connections_table
        elif stem != connections_table:
            names[resource] = stem + resource
        else:
            names[resource] = f"{connections_table}_{resource}"
    return names


def ensure_table(client: Any, name: str, spec: TableSpec) -> bool:
    """Create the table of ``spec`` unless it exists; returns True when it was created."""
    keys = [{"AttributeName": spec.hash_key, "KeyType": "HASH"}]
    if spec.range_key:
        keys.append({"AttributeName": spec.range_key, "KeyType": "RANGE"})
    params: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": k, "AttributeType": t} for k, t in spec.attributes.items()
        ],
        "KeySchema": keys,
    }
    if spec.indexes:
        gsis = []
        for index in spec.indexes:
            schema = [{"AttributeName": index.hash_key, "KeyType": "HASH"}]
            if index.range_key:
                schema.append({"AttributeName": index.range_key, "KeyType": "RANGE"})
            projection: dict[str, Any] = {"ProjectionType": index.projection_type}
            if index.projection_type == "INCLUDE":
                projection["NonKeyAttributes"] = list(index.non_key_attributes)
            gsis.append({"IndexName": index.name, "KeySchema": schema, "Projection": projection})
        params["GlobalSecondaryIndexes"] = gsis
    try:
        client.create_table(**params)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
        return False
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    if spec.ttl_attribute:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
        )
    return True


class TtlReaper:
    """Deletes items whose TTL attribute has passed, as DynamoDB would (moto never does).

    DynamoDB deletes expired items "within a few days"; readers must skip them anyway (docs/protocol.md 5).
    The reaper scans every ``interval_s`` and deletes conditionally, so it never removes an item that was
    refreshed in between.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        spec: TableSpec,
        *,
        interval_s: float = 30.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.table = table
        self.spec = spec
        self.interval_s = interval_s
        self._log = log or (lambda line: None)

    def reap_once(self, now: float | None = None) -> int:
        attr = self.spec.ttl_attribute
        if not attr:
            return 0
        now_s = int(now if now is not None else time.time())
        key_names = [self.spec.hash_key] + ([self.spec.range_key] if self.spec.range_key else [])
        names = {"#ttl": attr, **{f"#k{i}": k for i, k in enumerate(key_names)}}
        deleted = 0
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "#ttl < :now",
            "ProjectionExpression": ", ".join(f"#k{i}" for i in range(len(key_names))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":now": {"N": str(now_s)}},
        }
        for _ in range(1000):  # bounded pagination
            page = self.client.scan(**kwargs)
            for item in page.get("Items", []):
                key = {k: item[k] for k in key_names if k in item}
                try:
                    self.client.delete_item(
                        TableName=self.table,
                        Key=key,
                        ConditionExpression="#ttl < :now",
                        ExpressionAttributeNames={"#ttl": attr},
                        ExpressionAttributeValues={":now": {"N": str(now_s)}},
                    )
                    deleted += 1
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return deleted

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                n = await asyncio.to_thread(self.reap_once)
            except Exception as exc:
                self._log(f"TTL reaper: {exc}")
                continue
            if n:
                self._log(f"TTL reaper deleted {n} expired item(s) from {self.table}")
