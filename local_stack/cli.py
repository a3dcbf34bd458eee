"""``python -m local_stack up | token | invoke | publish | generate-event`` (flags mirror WS_PORT,
WEB_PORT, STAGE, JWT_SECRET, DYNAMODB_ENDPOINT, AWS_REGION and LOG_FORMAT; a flag wins over its variable)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import events
from .config import DEFAULT_STATE_DIR, LOG_FORMATS, StackConfig
from .stack import PortInUseError, readable_log_line, run_stack, state_path
from .terraform import TerraformError, load_model
from .tokens import make_token

__all__ = ["main"]


def _common(parser: argparse.ArgumentParser, *, serve: bool = True) -> None:
    """``serve``: the flags of a stack others use (ports, an external table); ``invoke --self-contained``
    runs one that touches nothing real, so it has none of them."""
    if serve:
        parser.add_argument("--ws-port", type=int, help="WebSocket + @connections port (WS_PORT, 3001)")
        parser.add_argument("--web-port", type=int, help="browser client port (WEB_PORT, 3000)")
    parser.add_argument("--stage", help="stage name (STAGE, dev)")
    parser.add_argument("--jwt-secret", help="HS256 secret the functions verify tokens with (JWT_SECRET)")
    if serve:
        parser.add_argument(
            "--dynamodb-endpoint", help="use this DynamoDB instead of the embedded one (DYNAMODB_ENDPOINT)"
        )
    parser.add_argument("--region", help="AWS region of the table (AWS_REGION, us-east-1)")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="function logs: text (one readable line each, metrics left out) or json (raw) (LOG_FORMAT)",
    )
    parser.add_argument(
        "--terraform-dir",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="read the module from DIR (repeatable; later ones override; default terraform/)",
    )
    parser.add_argument("--functions-dir", type=Path, help="folder of <function>/app.py (default lambdas/)")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a Terraform variable's default, like terraform -var (repeatable)",
    )


def _config(args: argparse.Namespace, **extra: Any) -> StackConfig:
    overrides: dict[str, Any] = {}
    for flag, name in (
        ("ws_port", "ws_port"),
        ("web_port", "web_port"),
        ("stage", "stage"),
        ("jwt_secret", "jwt_secret"),
        ("dynamodb_endpoint", "dynamodb_endpoint"),
        ("region", "region"),
        ("log_format", "log_format"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "terraform_dir", None):
        overrides["terraform_dirs"] = tuple(p.resolve() for p in args.terraform_dir)
    if getattr(args, "functions_dir", None):
        overrides["functions_dir"] = args.functions_dir.resolve()
    tf_vars = {}
    for item in getattr(args, "var", None) or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--var needs NAME=VALUE, got {item!r}")
        tf_vars[name] = value
    if tf_vars:
        overrides["tf_vars"] = tf_vars
    overrides.update(extra)
    return StackConfig.from_env(**overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole stack in the foreground (Ctrl-C stops it)")
    _common(up)
    up.add_argument(
        "--function-url",
        action="append",
        default=[],
        metavar="FUNCTION=URL",
        help="send FUNCTION's route to an RIE endpoint (…/2015-03-31/functions/function/invocations)",
    )
    up.add_argument("--workers", type=int, default=4, help="max concurrent executions per function (4)")
    up.add_argument(
        "--min-workers", type=int, default=1, help="pre-warmed executions per function (1; at most --workers)"
    )
    up.add_argument(
        "--idle-timeout", type=float, default=600.0, help="idle connection timeout, seconds (600)"
    )
    up.add_argument(
        "--max-duration", type=float, default=7200.0, help="maximum connection duration, seconds (7200)"
    )
    up.add_argument("--no-reload", action="store_true", help="do not recycle workers when code changes")
    up.add_argument(
        "--quiet", action="store_true", help="do not print the functions' logs (the ready lines still are)"
    )
    up.add_argument("--user", default="alice", help="user of the printed ready-made token (alice)")
    up.add_argument("--room", default="general", help="room of the printed example URL (general)")

    token = sub.add_parser("token", help="print a local HS256 token")
    token.add_argument("--user", required=True)
    token.add_argument("--name")
    token.add_argument("--room", help="restrict the token to this room (claim rooms: [ROOM])")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (3600)")
    token.add_argument("--jwt-secret", help="(JWT_SECRET)")

    invoke = sub.add_parser(
        "invoke",
        help="invoke one function once, like sam local invoke: the running `make dev`'s by default",
        description="Invoke FUNCTION once and print its response (exit status 1 on a function error). "
        "By default it is the function of the running `make dev` on WS_PORT (its table, its gateway and "
        "callback URL); --self-contained starts a throwaway stack instead (its own empty table and "
        "gateway: nothing real is touched). The event comes from --event, or generate-event's.",
    )
    invoke.add_argument("function", help="a key of local.functions (connect, send_message, ...)")
    invoke.add_argument("-e", "--event", help="JSON event file, '-' for stdin (default: generate-event's)")
    invoke.add_argument(
        "--self-contained", action="store_true", help="run the function in a throwaway stack of its own"
    )
    invoke.add_argument("--ws-port", type=int, help="the running stack's port (WS_PORT, 3001)")
    _common(invoke, serve=False)

    publish = sub.add_parser(
        "publish",
        help="post a message from a backend (the publish function) to a room or a user",
        description="Invoke the publish function, as a backend does with lambda:InvokeFunction: the message "
        "is stored and fanned out to a room's (--room) or a user's (--to-user) connections, from a system "
        "sender unless --user-id is given. By default on the running `make dev` on WS_PORT; "
        "--self-contained runs a throwaway stack (nothing real is touched, and no one is connected).",
    )
    target = publish.add_mutually_exclusive_group(required=True)
    target.add_argument("--room", help="the room to post to (room_id)")
    target.add_argument("--to-user", help="the user whose connections get a direct message (to_user_id)")
    publish.add_argument("--message", required=True, help="the message text")
    publish.add_argument("--user-id", help="the sender's user id (default: the function's system sender)")
    publish.add_argument("--name", help="the sender's display name")
    publish.add_argument(
        "--client-msg-id",
        help="the caller's id of the message: published again with the same id, it is not stored twice "
        "(the stored message is fanned out again)",
    )
    publish.add_argument(
        "--self-contained", action="store_true", help="run it in a throwaway stack of its own"
    )
    publish.add_argument("--ws-port", type=int, help="the running stack's port (WS_PORT, 3001)")
    _common(publish, serve=False)

    generate = sub.add_parser(
        "generate-event",
        help="print the event API Gateway sends a route (like sam local generate-event)",
        description="Print the event the gateway sends for ROUTE ($connect, $disconnect, $default, or a "
        "route key such as sendMessage; a function name works too), in the shape the local stack and "
        "API Gateway send it. $connect's carries a token signed with JWT_SECRET.",
    )
    generate.add_argument("route", help="route key or function name")
    generate.add_argument("--user", default="alice", help="token subject for $connect (alice)")
    generate.add_argument("--room", default="general", help="room_id of the event (general)")
    generate.add_argument("--message", default="Hello", help="message of a message route (Hello)")
    generate.add_argument("--body", help="the frame's body as sent, instead of the generated one")
    generate.add_argument("--connection-id", help="the connection the event is about (a new id)")
    generate.add_argument("--stage", help="(STAGE, dev)")
    generate.add_argument("--jwt-secret", help="(JWT_SECRET)")
    generate.add_argument("--terraform-dir", action="append", type=Path, default=[], metavar="DIR")
    return parser


async def _up(args: argparse.Namespace) -> int:
    urls = {}
    for item in args.function_url:
        name, sep, url = item.partition("=")
        if not sep:
            raise SystemExit(f"--function-url needs FUNCTION=URL, got {item!r}")
        urls[name] = url
    config = _config(
        args,
        function_urls=urls,
        max_workers=args.workers,
        min_workers=min(args.min_workers, args.workers),
        idle_timeout_s=args.idle_timeout,
        max_duration_s=args.max_duration,
        reload=not args.no_reload,
        echo_logs=not args.quiet,
        state_dir=Path(os.environ.get("LOCAL_STACK_STATE_DIR") or DEFAULT_STATE_DIR),
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_stack(config) as stack:
        if config.jwt_jwks_url:
            token_line = f"  Token         : JWT_JWKS_URL is set: one of its issuer ({config.jwt_jwks_url})"
            try_line = f"{stack.ws_url}?token=$TOKEN&room_id={args.room}"
        else:
            token = stack.token(args.user, ttl_s=24 * 3600)
            token_line = f"  Token ({args.user}, 24 h): {token}"
            try_line = f"{stack.ws_url}?token={token}&room_id={args.room}"
        lines = [
            "",
            "Local chat stack is ready (Ctrl-C stops it)",
            f"  WebSocket URL : {stack.ws_url}",
            f"  Client URL    : {stack.web_url or '(no web server)'}",
            f"  @connections  : {stack.callback_url}/@connections/{{connectionId}}",
            f"  DynamoDB      : {stack.dynamodb_endpoint} (table {config.table_name}, {config.region})",
            token_line,
            f"  Try           : {try_line}",
            "",
        ]
        print("\n".join(lines), flush=True)
        # The one machine-readable readiness signal (local_stack.testing waits for it).
        ready = {
            "event": "ready",
            "ws_url": stack.ws_url,
            "callback_url": stack.callback_url,
            "web_url": stack.web_url,
            "dynamodb_endpoint": stack.dynamodb_endpoint,
            "table_name": config.table_name,
            "region": config.region,
            "stage": config.stage,
            "state_file": str(state_path(config.state_dir, stack.ws_port)) if config.state_dir else None,
            "pid": os.getpid(),
        }
        print(json.dumps(ready), flush=True)
        await stop.wait()
        print("stopping…", flush=True)
    return 0


def _route_key(model_functions: dict[str, str], route: str) -> str:
    """``route`` as a route key: a function name becomes its route's key."""
    return model_functions.get(route, route)


def generate_event(
    route: str,
    *,
    route_keys: dict[str, str],
    config: StackConfig,
    user: str = "alice",
    room: str = "general",
    message: str = "Hello",
    body: str | None = None,
    connection_id: str | None = None,
) -> dict[str, Any]:
    """The event the gateway sends for ``route`` (a route key, or a function name of ``route_keys``)."""
    key = _route_key(route_keys, route)
    now = events.now_ms()
    conn = events.ConnectionInfo(
        connection_id=connection_id or events.new_id(),
        connected_at=now,
        source_ip="127.0.0.1",
        user_agent="local_stack generate-event",
        domain_name=f"{config.host}:{config.ws_port}",
        stage=config.stage,
        api_id=events.new_api_id(),
    )
    if key == "$connect":
        token, _ = make_token(config.jwt_secret, user, room=None, ttl_s=3600)
        return events.connect_event(
            conn,
            headers=[("Host", conn.domain_name), ("User-Agent", conn.user_agent or "")],
            query=[("token", token), ("room_id", room)],
            request_id=events.new_id(),
            request_ms=now,
            forwarded_port=config.ws_port,
        )
    if key == "$disconnect":
        return events.disconnect_event(
            conn, status_code=1000, reason="", request_id=events.new_id(), request_ms=now
        )
    if body is None:
        frame: dict[str, Any] = {"room_id": room, "message": message}
        if key != "$default":
            frame = {"action": key, **frame}
        body = json.dumps(frame)
    return events.message_event(
        conn, route_key=key, body=body, request_id=events.new_id(), message_id=events.new_id(), request_ms=now
    )


def _generate(args: argparse.Namespace) -> int:
    config = _config(args)
    model = load_model(config.terraform_dirs)
    route_keys = {
        name: spec.route_key for name, spec in model.functions.items() if spec.route_key is not None
    }
    known = set(route_keys.values()) | {"$connect", "$disconnect", "$default"}
    key = _route_key(route_keys, args.route)
    if key not in known:
        print(
            f"error: {args.route!r} is neither a route key ({', '.join(sorted(known))}) "
            f"nor a function ({', '.join(route_keys)})",
            file=sys.stderr,
        )
        return 2
    event = generate_event(
        args.route,
        route_keys=route_keys,
        config=config,
        user=args.user,
        room=args.room,
        message=args.message,
        body=args.body,
        connection_id=args.connection_id,
    )
    print(json.dumps(event, indent=2))
    return 0


def _read_event(args: argparse.Namespace, route_keys: dict[str, str | None], config: StackConfig) -> bytes:
    if args.event is None and route_keys.get(args.function) is None:
        raise ValueError(f"{args.function} has no route, so no event to generate: give one with --event")
    if args.event is None:
        print(f"(no --event: using generate-event {route_keys[args.function]}'s)", file=sys.stderr)
        routed = {name: key for name, key in route_keys.items() if key is not None}
        event = generate_event(args.function, route_keys=routed, config=config)
        return json.dumps(event).encode()
    try:
        raw = sys.stdin.read() if args.event == "-" else Path(args.event).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the event: {exc}") from exc
    try:
        json.loads(raw)
    except ValueError as exc:
        source = "stdin" if args.event == "-" else args.event
        raise ValueError(f"the event ({source}) is not JSON: {exc}") from exc
    return raw.encode()


def _unknown_function(name: str, known: Any) -> int:
    print(f"error: unknown function {name!r}: local.functions has {', '.join(known)}", file=sys.stderr)
    return 2


def _print_result(args: argparse.Namespace, payload: bytes, function_error: bool) -> int:
    """Print the response; 1 for a function error, or for publish when the function refused (its answer
    is not ``{"ok": true, ...}``), as a backend checking the answer would."""
    sys.stdout.write(payload.decode(errors="replace") + "\n")
    sys.stdout.flush()
    if function_error:
        return 1
    if args.command == "publish":
        try:
            answer = json.loads(payload)
        except ValueError:
            return 1
        return 0 if isinstance(answer, dict) and answer.get("ok") is True else 1
    return 0


def publish_event(
    *,
    message: str,
    room: str | None = None,
    to_user: str | None = None,
    user_id: str | None = None,
    name: str | None = None,
    client_msg_id: str | None = None,
) -> dict[str, Any]:
    """The publish function's event: ``{"room_id" | "to_user_id", "message", "user_id"?, "name"?,
    "client_msg_id"?}``."""
    if (room is None) == (to_user is None):
        raise ValueError("give exactly one of --room and --to-user")
    event: dict[str, Any] = {"room_id": room} if room is not None else {"to_user_id": to_user}
    event["message"] = message
    if user_id is not None:
        event["user_id"] = user_id
    if name is not None:
        event["name"] = name
    if client_msg_id is not None:
        event["client_msg_id"] = client_msg_id
    return event


def _invoke_running(args: argparse.Namespace, payload: bytes | None = None) -> int:
    """POST the event to the running stack's function endpoint (the RIE path), so the function runs
    in that stack's pool with its environment: its table, its callback URL, its gateway."""
    port = args.ws_port if args.ws_port is not None else StackConfig.from_env().ws_port
    state_dir = Path(os.environ.get("LOCAL_STACK_STATE_DIR") or DEFAULT_STATE_DIR)
    path = state_path(state_dir, port)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        print(
            f"error: no running `make dev` on WS_PORT {port} ({path} does not exist): start it, "
            "set WS_PORT / --ws-port to its port, or use --self-contained",
            file=sys.stderr,
        )
        return 2
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        print(f"error: {path} is left from a stack that is gone: start `make dev` again", file=sys.stderr)
        return 2
    functions = state["functions"]
    if args.function not in functions:
        return _unknown_function(args.function, functions)
    config = StackConfig.from_env(stage=state["stage"], ws_port=port)
    route_keys = {name: spec["route_key"] for name, spec in functions.items()}
    if payload is None:
        payload = _read_event(args, route_keys, config)
    request = urllib.request.Request(  # noqa: S310 - the running stack's own http:// endpoint
        functions[args.function]["invoke_url"],
        data=payload,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=960) as response:  # noqa: S310
            body, function_error = response.read(), response.headers.get("X-Amz-Function-Error")
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: the stack on WS_PORT {port} does not answer ({exc})", file=sys.stderr)
        return 2
    print(
        f"invoked {args.function} of the running stack {state['ws_url']} (table {state['table_name']} at "
        f"{state['dynamodb_endpoint']}); its logs are in that stack's output",
        file=sys.stderr,
    )
    return _print_result(args, body, bool(function_error))


async def _invoke_self_contained(args: argparse.Namespace, payload: bytes | None = None) -> int:
    config = _config(
        args,
        web_port=None,
        ws_port=0,
        dynamodb_endpoint=None,  # its own embedded table, never DYNAMODB_ENDPOINT's
        only_functions=(args.function,),
        min_workers=0,
        reload=False,
        echo_logs=False,
        state_dir=None,
    )
    model = load_model(config.terraform_dirs)
    if args.function not in model.functions:
        return _unknown_function(args.function, model.functions)
    route_keys: dict[str, str | None] = {name: spec.route_key for name, spec in model.functions.items()}
    if payload is None:
        payload = _read_event(args, route_keys, config)
    async with run_stack(config) as stack:
        result = await stack.pools[args.function].invoke(payload)
        for line in stack.logs:
            name, _, text = line.partition("] ")
            shown = line if config.log_format == "json" else readable_log_line(name[1:], text)
            if shown is not None:
                print(shown, file=sys.stderr)
        return _print_result(args, result.payload, not result.ok)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "token":
            secret = args.jwt_secret or os.environ.get("JWT_SECRET") or StackConfig().jwt_secret
            value, _ = make_token(secret, args.user, name=args.name, room=args.room, ttl_s=args.ttl)
            print(value)
            return 0
        if args.command == "up":
            return asyncio.run(_up(args))
        if args.command == "invoke":
            started = time.monotonic()
            try:
                if args.self_contained:
                    return asyncio.run(_invoke_self_contained(args))
                return _invoke_running(args)
            finally:
                print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
        if args.command == "publish":
            args.function, started = "publish", time.monotonic()
            event = publish_event(
                message=args.message,
                room=args.room,
                to_user=args.to_user,
                user_id=args.user_id,
                name=args.name,
                client_msg_id=args.client_msg_id,
            )
            payload = json.dumps(event).encode()
            try:
                if args.self_contained:
                    return asyncio.run(_invoke_self_contained(args, payload))
                return _invoke_running(args, payload)
            finally:
                print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
        if args.command == "generate-event":
            return _generate(args)
    except (PortInUseError, TerraformError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2
