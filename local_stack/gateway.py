"""The WebSocket gateway and its @connections API, on one aiohttp server (one port, keep-alive).

Behaviour is API Gateway's (docs/aws-behaviour.md):

* ``GET /{stage}`` with an upgrade: the handshake is held until ``$connect`` answers; 2xx -> 101 (the
  ``Sec-WebSocket-Protocol`` it returns is chosen), other status -> that status with its body, error or
  timeout -> 502. Without a ``$connect`` route the connection is accepted. Without an upgrade -> 426.
* frames: route selection by the Terraform expression, ``$default`` fallback, the exact Forbidden and
  Internal server error frames, a route's ``body`` sent back only when the route has a route response.
* limits: a data frame over ``frame_bytes`` closes 1009 (checked on the wire, per frame), a message
  over ``message_bytes`` closes 1009, a binary frame closes 1003; idle timeout and maximum duration
  close 1001. ``$disconnect`` runs after every close with ``disconnectStatusCode``/``disconnectReason``.
* ``/{stage}/@connections/{id}``: POST 200 / 410 GoneException / 413 PayloadTooLargeException, GET with
  lower-case keys, DELETE 204 (closes, fires ``$disconnect``); another stage -> 403 ForbiddenException.

Fairness and memory (README.md, known differences): each connection has an ordered, bounded inbound
queue (``inbound_queue_frames`` waiting, ``inbound_concurrency`` invoked at once, started in arrival
order; frames beyond it are dropped), so one flooding client cannot take every execution environment or
grow the process. Each connection also has a bounded outbound queue: ``POST @connections`` answers 200
once its frame is queued for the socket; a reader that lets more than ``outbound_queue_bytes`` pile up is
closed (1008) and later posts get 410. A connection that has not sent a complete request head within
``handshake_timeout_s`` is closed (this is also how long an idle keep-alive connection stays open).
Client frames without a mask close the connection with 1002 (RFC 6455 section 5.1).

Log: one line per handshake, frame and disconnect: ``<route> <connection id> -> <function>: <status>
<ms> ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import WSMsgType, web

from . import faults, sigv4
from .events import (
    ConnectionInfo,
    RouteSelector,
    connect_event,
    disconnect_event,
    disconnect_reason,
    error_frame,
    iso8601_ms,
    message_event,
    new_id,
    now_ms,
)
from .runtime import FunctionPool, InvokeResult

__all__ = ["Gateway", "GatewayLimits", "Integration", "LocalIntegration", "RemoteIntegration", "Route"]


class Integration(Protocol):
    async def invoke(self, payload: bytes) -> InvokeResult: ...


class LocalIntegration:
    """A route served by a local :class:`FunctionPool` (no HTTP hop)."""

    def __init__(self, pool: FunctionPool) -> None:
        self.pool = pool

    async def invoke(self, payload: bytes) -> InvokeResult:
        return await self.pool.invoke(payload)


class RemoteIntegration:
    """A route served by any RIE-style endpoint (``POST .../2015-03-31/functions/function/invocations``),
    for example a container running the real Runtime Interface Emulator."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: aiohttp.ClientSession | None = None

    async def invoke(self, payload: bytes) -> InvokeResult:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self.url, data=payload, headers={"Content-Type": "application/json"}
            ) as resp:
                body = await resp.read()
                function_error = resp.headers.get("X-Amz-Function-Error")
                status = resp.status
        except aiohttp.ClientError as exc:
            return InvokeResult(
                json.dumps({"errorMessage": str(exc), "errorType": "Runtime.Unavailable"}).encode(),
                "Runtime.Unavailable",
            )
        if status != 200 or function_error:
            return InvokeResult(body, function_error or f"HTTP{status}")
        # the RIE answers function errors with 200 and the error document
        with contextlib.suppress(ValueError):
            doc = json.loads(body)
            if (
                isinstance(doc, dict)
                and "errorType" in doc
                and "errorMessage" in doc
                and "statusCode" not in doc
            ):
                return InvokeResult(body, str(doc["errorType"]))
        if body.startswith(b"Task timed out"):
            return InvokeResult(body, "Sandbox.Timedout")
        return InvokeResult(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class Route:
    key: str
    function: str
    integration: Integration
    route_response: bool = False


@dataclass(frozen=True)
class GatewayLimits:
    frame_bytes: int = 32 * 1024
    message_bytes: int = 128 * 1024
    post_bytes: int = 128 * 1024
    idle_timeout_s: float = 600.0
    max_duration_s: float = 7200.0
    integration_timeout_s: float = 29.0
    inbound_queue_frames: int = 128  # per connection, waiting for an invocation; more are dropped
    inbound_concurrency: int = 2  # per connection, invocations at once
    outbound_queue_bytes: int = 1024 * 1024  # per connection, posted but not yet written; more closes 1008
    handshake_timeout_s: float = 10.0  # to send a complete request head (also the keep-alive idle time)
    close_grace_s: float = 5.0  # a server-initiated close waits this long for the client, then aborts


SLOW_READER = (1008, "Slow reader: outbound queue full")
PROTOCOL_ERROR = (1002, "Protocol error")


class _FrameGuard:
    """Wraps aiohttp's WebSocket parser and checks every frame header on the wire.

    aiohttp only limits whole messages and accepts unmasked client frames; API Gateway limits frames
    (32 KB) and messages (128 KB) separately, and RFC 6455 requires every client frame to be masked. A data
    frame over the limit or without a mask is dropped (its header and payload never reach aiohttp) and
    ``on_violation(code, reason)`` is called once; later control frames, such as the client's close reply,
    pass through.
    """

    __slots__ = ("_cb", "_dropping", "_hdr", "_inner", "_limit", "_remaining", "_violated")

    def __init__(self, inner: Any, limit: int, on_violation: Callable[[int, str], None]) -> None:
        self._inner = inner
        self._limit = limit
        self._cb = on_violation
        self._hdr = bytearray()
        self._remaining = 0
        self._dropping = False
        self._violated = False

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def __getattr__(self, name: str) -> Any:  # anything else aiohttp may ask the parser
        return getattr(self._inner, name)

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        n = len(data)
        pos = 0
        out = bytearray()
        hdr = self._hdr
        while pos < n:
            if self._remaining:
                take = min(self._remaining, n - pos)
                if not self._dropping:
                    out += data[pos : pos + take]
                pos += take
                self._remaining -= take
                continue
            if len(hdr) < 2:
                take = min(2 - len(hdr), n - pos)
                hdr += data[pos : pos + take]
                pos += take
                if len(hdr) < 2:
                    break
            l7 = hdr[1] & 0x7F
            need = 2 + (2 if l7 == 126 else 8 if l7 == 127 else 0) + (4 if hdr[1] & 0x80 else 0)
            if len(hdr) < need:
                take = min(need - len(hdr), n - pos)
                hdr += data[pos : pos + take]
                pos += take
                if len(hdr) < need:
                    break
            if l7 == 126:
                length = int.from_bytes(hdr[2:4], "big")
            elif l7 == 127:
                length = int.from_bytes(hdr[2:10], "big")
            else:
                length = l7
            opcode = hdr[0] & 0x0F
            masked = bool(hdr[1] & 0x80)
            self._dropping = opcode < 8 and (length > self._limit or not masked)
            if self._dropping:
                if not self._violated:
                    self._violated = True
                    self._cb(*(PROTOCOL_ERROR if not masked else (1009, "Message too big")))
            else:
                out += hdr
            self._remaining = length
            hdr.clear()
        if out:
            result: tuple[bool, bytes] = self._inner.feed_data(bytes(out))
            return result
        return False, b""


@dataclass(eq=False)
class _Connection:
    info: ConnectionInfo
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None = None
    closing: bool = False
    close_code: int | None = None
    close_reason: str = ""
    close_task: asyncio.Task[Any] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    inbound: deque[str] = field(default_factory=deque)  # frames waiting for an invocation, in order
    runners: int = 0  # tasks invoking this connection's frames (at most inbound_concurrency)
    dropped: int = 0  # frames dropped since the queue last had room
    outbound: deque[str | bytes] = field(default_factory=deque)  # frames for the socket, in order
    outbound_bytes: int = 0
    writer: asyncio.Task[Any] | None = None


def _parse_proxy_result(result: InvokeResult) -> tuple[int, dict[str, str], str | None] | None:
    """(statusCode, headers, body) of a Lambda proxy response; ``None`` if malformed."""
    try:
        doc = result.json()
    except ValueError:
        return None
    if doc is None:
        return 200, {}, None
    if not isinstance(doc, dict):
        return 200, {}, doc if isinstance(doc, str) else json.dumps(doc)
    status = doc.get("statusCode", 200)
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return None
    headers = {str(k): str(v) for k, v in (doc.get("headers") or {}).items()}
    body = doc.get("body")
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
    if "statusCode" not in doc and "body" not in doc:
        body = json.dumps(doc)
    return status, headers, body


class Gateway:
    """API Gateway's WebSocket behaviour for one stage, as an aiohttp application.

    ``credentials`` (access key id -> secret key): when given, every ``@connections`` request must be
    SigV4-signed with one of them for ``execute-api`` in ``region``; when ``None`` any request is accepted.
    """

    def __init__(
        self,
        *,
        stage: str,
        routes: Mapping[str, Route],
        route_selection_expression: str,
        limits: GatewayLimits | None = None,
        api_id: str = "localapi01",
        forwarded_port: int = 0,
        log: Callable[[str], None] | None = None,
        fault_switch: faults.Switch | None = None,
        credentials: Mapping[str, str] | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.stage = stage
        self.routes = dict(routes)
        self._selector = RouteSelector(route_selection_expression, self.routes)
        self.limits = limits or GatewayLimits()
        self.api_id = api_id
        self.forwarded_port = forwarded_port
        self.connections: dict[str, _Connection] = {}
        self.faults = fault_switch  # LOCAL_STACK_FAULTS' "connections" entry: None unless it is on
        self.credentials = dict(credentials) if credentials is not None else None
        self.region = region
        self._log = log or (lambda line: print(f"[gateway] {line}", flush=True))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._open_handlers = 0
        self.app = web.Application(
            client_max_size=max(4 * 1024 * 1024, self.limits.post_bytes * 4),
            # aiohttp closes a connection that is waiting for a request head once this passes: a
            # half-sent handshake, or an idle keep-alive connection (its default is about an hour)
            handler_args={"keepalive_timeout": self.limits.handshake_timeout_s},
        )
        self.app.router.add_route("*", "/{stage}", self._websocket)
        self.app.router.add_route("*", "/{stage}/@connections/{connection_id}", self._management)
        self.app.router.add_route("*", "/{tail:.*}", self._forbidden)

    # -- helpers --------------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _call(self, route: Route, event: dict[str, Any]) -> InvokeResult | None:
        """Invoke a route's integration; ``None`` when API Gateway's integration timeout passes."""
        try:
            return await asyncio.wait_for(
                route.integration.invoke(json.dumps(event).encode()), self.limits.integration_timeout_s
            )
        except TimeoutError:
            return None

    def _ids(self) -> tuple[str, int]:
        return new_id(), now_ms()

    def _line(
        self,
        route_key: str,
        connection_id: str,
        function: str | None,
        status: object,
        started: float,
        note: str = "",
    ) -> None:
        """The one log line of a handshake, frame or disconnect."""
        ms = (time.monotonic() - started) * 1000
        target = f" -> {function}" if function else ""
        self._log(f"{route_key} {connection_id}{target}: {status} {ms:.0f} ms{' ' + note if note else ''}")

    # -- WebSocket --------------------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["stage"] != self.stage:
            return await self._forbidden(request)
        if request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response(
                {"message": "Upgrade Required"},
                status=426,
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            )
        started = time.monotonic()
        connected_at = now_ms()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        info = ConnectionInfo(
            connection_id=new_id(),
            connected_at=connected_at,
            source_ip=peer[0] if peer else "127.0.0.1",
            user_agent=request.headers.get("User-Agent"),
            domain_name=request.host,
            stage=self.stage,
            api_id=self.api_id,
            last_active_at=connected_at,
        )
        cid = info.connection_id
        protocols: tuple[str, ...] = ()
        route = self.routes.get("$connect")
        if route is not None:
            request_id, request_ms = self._ids()
            event = connect_event(
                info,
                headers=request.headers.items(),
                query=request.query.items(),
                request_id=request_id,
                request_ms=request_ms,
                forwarded_port=self.forwarded_port or (request.url.port or 80),
            )
            result = await self._call(route, event)
            parsed = _parse_proxy_result(result) if result is not None and result.ok else None
            if parsed is None:
                why = "timed out" if result is None else (result.error_type or "malformed response")
                self._line("$connect", cid, route.function, f"502 ({why})", started)
                return web.json_response({"message": "Internal server error"}, status=502)
            status, headers, body = parsed
            if not 200 <= status < 300:
                self._line("$connect", cid, route.function, status, started)
                ctype = next(
                    (v for k, v in headers.items() if k.lower() == "content-type"), "application/json"
                )
                return web.Response(
                    status=status, body=(body or "").encode(), headers={"Content-Type": ctype}
                )
            chosen = next((v for k, v in headers.items() if k.lower() == "sec-websocket-protocol"), None)
            if chosen:
                protocols = (chosen,)
        ws = web.WebSocketResponse(
            protocols=protocols,
            compress=False,
            autoping=True,
            timeout=self.limits.close_grace_s,
            max_msg_size=self.limits.message_bytes,
        )
        await ws.prepare(request)
        self._line("$connect", cid, route.function if route else "(no $connect route)", 101, started)
        conn = _Connection(info=info, ws=ws, transport=request.transport)
        proto = request.protocol
        parser = getattr(proto, "_payload_parser", None)
        if parser is not None:
            proto._payload_parser = _FrameGuard(
                parser,
                self.limits.frame_bytes,
                lambda code, reason: self.close_connection(conn, code, reason),
            )
        self.connections[cid] = conn
        self._open_handlers += 1
        loop = asyncio.get_running_loop()
        conn.timers.append(
            loop.call_later(self.limits.max_duration_s, self.close_connection, conn, 1001, "Going away")
        )
        conn.timers.append(loop.call_later(self.limits.idle_timeout_s, self._idle_check, conn))
        client_code: int | None = None
        client_reason = ""
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    info.last_active_at = now_ms()
                    if not conn.closing:  # frames after a server-side close are not invoked
                        self._accept_frame(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self.close_connection(conn, 1003, "Unsupported data")
                elif msg.type is WSMsgType.CLOSE:
                    client_code = int(msg.data) or 1005
                    client_reason = msg.extra or ""
                    break
                elif msg.type is WSMsgType.ERROR:
                    exc = msg.data
                    code = getattr(exc, "code", None)
                    if code == 1009:
                        client_code, client_reason = 1009, "Message too big"
                    break
                else:  # CLOSING / CLOSED
                    break
        finally:
            for timer in conn.timers:
                timer.cancel()
            self.connections.pop(cid, None)
            if conn.close_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(conn.close_task), self.limits.close_grace_s + 1)
            if conn.close_code is not None:
                code, reason = conn.close_code, conn.close_reason
            elif client_code is not None:
                code, reason = client_code, client_reason
            else:
                code, reason = 1006, ""
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), self.limits.close_grace_s)
            self._abort_if_stuck(conn)
            conn.outbound.clear()  # what the socket never took is released with it
            conn.outbound_bytes = 0
            self._spawn(self._on_disconnect(info, code, reason))
            self._open_handlers -= 1
        return ws

    def _idle_check(self, conn: _Connection) -> None:
        idle_for = (now_ms() - conn.info.last_active_at) / 1000
        remaining = self.limits.idle_timeout_s - idle_for
        if remaining <= 0.001:
            self.close_connection(conn, 1001, "Going away")
        else:
            conn.timers.append(asyncio.get_running_loop().call_later(remaining, self._idle_check, conn))

    def close_connection(self, conn: _Connection, code: int, reason: str) -> None:
        """Close from the server side (limits, timeouts, DELETE): gone for @connections at once."""
        if conn.closing:
            return
        conn.closing = True
        conn.close_code, conn.close_reason = code, disconnect_reason(code, reason)
        self.connections.pop(conn.info.connection_id, None)
        conn.close_task = self._spawn(self._close(conn, code, reason))

    async def _close(self, conn: _Connection, code: int, reason: str) -> None:
        """Flush what was posted, send the close frame and wait for the client's; past the grace time (or at
        once for a slow reader, whose socket takes nothing) the TCP connection is aborted."""
        loop = asyncio.get_running_loop()
        slow = (code, reason) == SLOW_READER
        deadline = loop.time() + (0.5 if slow else self.limits.close_grace_s)
        try:
            if conn.writer is not None and not slow and code != PROTOCOL_ERROR[0]:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(conn.writer), max(0.01, deadline - loop.time()))
            await asyncio.wait_for(
                conn.ws.close(code=code, message=reason.encode()[:123]), max(0.01, deadline - loop.time())
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            self._abort_if_stuck(conn)

    @staticmethod
    def _abort_if_stuck(conn: _Connection) -> None:
        """``transport.close()`` waits for the write buffer to drain: a socket nobody reads never closes."""
        transport = conn.transport
        if transport is not None and transport.is_closing() and transport.get_write_buffer_size():
            transport.abort()

    # -- inbound: an ordered, bounded queue per connection ---------------------------------------------
    def _accept_frame(self, conn: _Connection, body: str) -> None:
        """Invoke at once while fewer than ``inbound_concurrency`` run, else wait in order; drop when
        ``inbound_queue_frames`` already wait."""
        limits = self.limits
        if conn.runners < limits.inbound_concurrency:
            conn.runners += 1
            self._spawn(self._run_inbound(conn, body))
        elif len(conn.inbound) < limits.inbound_queue_frames:
            conn.inbound.append(body)
        else:
            conn.dropped += 1
            if conn.dropped == 1:
                self._log(
                    f"{conn.info.connection_id}: inbound queue full ({len(conn.inbound)} frames waiting): "
                    "dropping frames"
                )

    async def _run_inbound(self, conn: _Connection, body: str) -> None:
        try:
            while True:
                try:
                    await self._on_message(conn, body)
                except Exception as exc:  # a broken integration must not stall this connection's queue
                    self._log(f"{conn.info.connection_id}: frame not handled: {exc!r}")
                if not conn.inbound:
                    break
                body = conn.inbound.popleft()
                self._report_dropped(conn)
        finally:
            conn.runners -= 1
            self._report_dropped(conn)

    def _report_dropped(self, conn: _Connection) -> None:
        if conn.dropped:
            self._log(f"{conn.info.connection_id}: {conn.dropped} frame(s) dropped, inbound queue full")
            conn.dropped = 0

    async def _on_message(self, conn: _Connection, body: str) -> None:
        started = time.monotonic()
        info = conn.info
        cid = info.connection_id
        route_key = self._selector.select(body)
        request_id, request_ms = self._ids()
        if route_key is None:
            self._line("(no route)", cid, None, "403 Forbidden", started)
            self._send(conn, error_frame("Forbidden", cid, request_id))
            return
        route = self.routes[route_key]
        event = message_event(
            info,
            route_key=route_key,
            body=body,
            request_id=request_id,
            message_id=new_id(),
            request_ms=request_ms,
        )
        result = await self._call(route, event)
        if result is None:
            self._line(route_key, cid, route.function, "504 Endpoint request timed out", started)
            self._send(conn, error_frame("Endpoint request timed out", cid, request_id))
            return
        if not result.ok:
            self._line(
                route_key, cid, route.function, f"502 Internal server error ({result.error_type})", started
            )
            self._send(conn, error_frame("Internal server error", cid, request_id))
            return
        parsed = _parse_proxy_result(result)
        self._line(route_key, cid, route.function, parsed[0] if parsed else "malformed response", started)
        if route.route_response:
            if parsed is None:
                self._send(conn, error_frame("Internal server error", cid, request_id))
            elif parsed[2]:
                self._send(conn, parsed[2])

    # -- outbound: an ordered, bounded queue per connection --------------------------------------------
    def _send(self, conn: _Connection, data: str | bytes) -> bool:
        """Queue a frame for the socket; False when the connection is gone or was just closed as a slow
        reader (its queue would have passed ``outbound_queue_bytes``)."""
        if conn.closing or conn.ws.closed:
            return False
        size = len(data.encode() if isinstance(data, str) else data)
        if conn.outbound and conn.outbound_bytes + size > self.limits.outbound_queue_bytes:
            self._log(
                f"{conn.info.connection_id}: slow reader, {conn.outbound_bytes} bytes not taken by the "
                f"socket: closing {SLOW_READER[0]}"
            )
            self.close_connection(conn, *SLOW_READER)
            return False
        conn.outbound.append(data)
        conn.outbound_bytes += size
        if conn.writer is None:
            conn.writer = self._spawn(self._write_outbound(conn))
        return True

    async def _write_outbound(self, conn: _Connection) -> None:
        try:
            while conn.outbound:
                data = conn.outbound[0]
                try:
                    if isinstance(data, str):
                        await conn.ws.send_str(data)
                    else:
                        await conn.ws.send_bytes(data)
                except (ConnectionError, RuntimeError):
                    break
                if conn.outbound and conn.outbound[0] is data:
                    conn.outbound.popleft()
                    conn.outbound_bytes -= len(data.encode() if isinstance(data, str) else data)
        finally:
            conn.writer = None

    async def _on_disconnect(self, info: ConnectionInfo, code: int, reason: str) -> None:
        started = time.monotonic()
        route = self.routes.get("$disconnect")
        note = f"(close {code})"
        if route is None:
            self._line("$disconnect", info.connection_id, "(no $disconnect route)", "-", started, note)
            return
        request_id, request_ms = self._ids()
        event = disconnect_event(
            info, status_code=code, reason=reason, request_id=request_id, request_ms=request_ms
        )
        result = await self._call(route, event)
        if result is None:
            status: object = "timed out"
        elif not result.ok:
            status = f"failed ({result.error_type})"
        else:
            parsed = _parse_proxy_result(result)
            status = parsed[0] if parsed else "malformed response"
        self._line("$disconnect", info.connection_id, route.function, status, started, note)

    # -- @connections --------------------------------------------------------------------------------------
    @staticmethod
    def _aws_error(status: int, error_type: str, message: str | None) -> web.Response:
        return web.json_response(
            {"message": message}, status=status, headers={"x-amzn-ErrorType": error_type}
        )

    async def _management(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["stage"] != self.stage:
            return self._aws_error(403, "ForbiddenException", "Forbidden")
        # looked up after the body is read: a connection closing meanwhile is already out of the table
        # (close_connection removes it when it starts closing), so ``None`` is the only "gone" case
        method = request.method
        body = await request.read() if method == "POST" else b""
        if self.credentials is not None:
            refused = sigv4.verify(
                method=method,
                url=f"{request.scheme}://{request.host}{request.raw_path}",
                headers=request.headers,
                body=body,
                credentials=self.credentials,
                region=self.region,
            )
            if refused is not None:
                return self._aws_error(403, refused.error_type, refused.message)
        conn = self.connections.get(request.match_info["connection_id"])
        if method == "POST":
            if len(body) > self.limits.post_bytes:
                return self._aws_error(413, "PayloadTooLargeException", "Request entity too large")
            if conn is None:
                return self._aws_error(410, "GoneException", None)
            if self.faults is not None and self.faults.fires(conn.info.connection_id, body):
                return await self._fault(request, self.faults.kind)
            try:
                data: str | bytes = body.decode("utf-8")
            except UnicodeDecodeError:
                data = body
            # answered once the frame is queued for the socket, so a reader that stops reading never makes
            # its sender wait (or time out and post again); past the queue's bound it is closed instead
            if not self._send(conn, data):
                return self._aws_error(410, "GoneException", None)
            return web.Response(status=200, content_type="application/json")
        if conn is None:
            return self._aws_error(410, "GoneException", None)
        if method == "GET":
            info = conn.info
            return web.json_response(
                {
                    "connectedAt": iso8601_ms(info.connected_at),
                    "identity": info.identity(),
                    "lastActiveAt": iso8601_ms(info.last_active_at),
                }
            )
        if method == "DELETE":
            self.close_connection(conn, 1000, "")
            return web.Response(status=204)
        return self._aws_error(403, "ForbiddenException", "Forbidden")

    async def _fault(self, request: web.Request, kind: str) -> web.StreamResponse:
        if kind == "timeout":  # held past the caller's read timeout, then dropped unanswered
            await asyncio.sleep(faults.hold_seconds())
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=504)
        status = int(kind)
        return self._aws_error(status, faults.CONNECTION_ERRORS[status], "injected by LOCAL_STACK_FAULTS")

    async def _forbidden(self, request: web.Request) -> web.StreamResponse:
        return self._aws_error(403, "ForbiddenException", "Forbidden")

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def close(self, timeout: float = 5.0) -> None:
        """Close every connection (1001 Going away), let their ``$disconnect`` run, then stop."""
        for conn in list(self.connections.values()):
            self.close_connection(conn, 1001, "Going away")
        deadline = time.monotonic() + timeout
        while (self._tasks or self._open_handlers) and time.monotonic() < deadline:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=max(0.05, deadline - time.monotonic()))
            else:
                await asyncio.sleep(0.02)
        for task in list(self._tasks):
            task.cancel()
        for route in self.routes.values():
            if isinstance(route.integration, RemoteIntegration):
                await route.integration.close()
