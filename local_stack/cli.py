"""``python -m local_stack up | token | invoke`` (flags mirror WS_PORT, WEB_PORT, STAGE, JWT_SECRET,
DYNAMODB_ENDPOINT and AWS_REGION; a flag wins over its variable)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .config import StackConfig
from .stack import PortInUseError, run_stack
from .terraform import TerraformError
from .tokens import make_token

__all__ = ["main"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ws-port", type=int, help="WebSocket gateway + @connections port (WS_PORT, 3001)")
    parser.add_argument("--web-port", type=int, help="browser client port (WEB_PORT, 3000)")
    parser.add_argument("--stage", help="stage name (STAGE, dev)")
    parser.add_argument("--jwt-secret", help="HS256 secret the functions verify tokens with (JWT_SECRET)")
    parser.add_argument(
        "--dynamodb-endpoint", help="use this DynamoDB instead of the embedded one (DYNAMODB_ENDPOINT)"
    )
    parser.add_argument("--region", help="AWS region of the table (AWS_REGION, us-east-1)")
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
        "--idle-timeout", type=float, default=600.0, help="idle connection timeout, seconds (600)"
    )
    up.add_argument(
        "--max-duration", type=float, default=7200.0, help="maximum connection duration, seconds (7200)"
    )
    up.add_argument("--no-reload", action="store_true", help="do not recycle workers when code changes")
    up.add_argument("--user", default="alice", help="user of the printed ready-made token (alice)")
    up.add_argument("--room", default="general", help="room of the printed example URL (general)")

    token = sub.add_parser("token", help="print a local HS256 token")
    token.add_argument("--user", required=True)
    token.add_argument("--name")
    token.add_argument("--room", help="restrict the token to this room (claim rooms: [ROOM])")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (3600)")
    token.add_argument("--jwt-secret", help="(JWT_SECRET)")

    invoke = sub.add_parser(
        "invoke", help="invoke one function once with an event file (like sam local invoke)"
    )
    _common(invoke)
    invoke.add_argument("function", help="a key of local.functions (connect, send_message, ...)")
    invoke.add_argument("--event", required=True, help="JSON event file, '-' for stdin")
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
        idle_timeout_s=args.idle_timeout,
        max_duration_s=args.max_duration,
        reload=not args.no_reload,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_stack(config) as stack:
        token = stack.token(args.user, ttl_s=24 * 3600)
        lines = [
            "",
            "Local chat stack is ready (Ctrl-C stops it)",
            f"  WebSocket URL : {stack.ws_url}",
            f"  Client URL    : {stack.web_url or '(no web server)'}",
            f"  @connections  : {stack.callback_url}/@connections/{{connectionId}}",
            f"  DynamoDB      : {stack.dynamodb_endpoint} (table {config.table_name}, {config.region})",
            f"  Token ({args.user}, 24 h): {token}",
            f"  Try           : {stack.ws_url}?token={token}&room_id={args.room}",
            "",
        ]
        print("\n".join(lines), flush=True)
        await stop.wait()
        print("stopping…", flush=True)
    return 0


async def _invoke(args: argparse.Namespace) -> int:
    raw = sys.stdin.read() if args.event == "-" else Path(args.event).read_text(encoding="utf-8")
    json.loads(raw)  # fail early on a bad file
    config = _config(
        args,
        web_port=None,
        ws_port=args.ws_port or 0,
        only_functions=(args.function,),
        min_workers=0,
        reload=False,
        echo_logs=False,
    )
    async with run_stack(config) as stack:
        pool = stack.pools.get(args.function)
        if pool is None:
            print(
                f"unknown function {args.function!r}: local.functions has {', '.join(stack.model.functions)}",
                file=sys.stderr,
            )
            return 2
        result = await pool.invoke(raw.encode())
        for line in stack.logs:
            print(line, file=sys.stderr)
        sys.stdout.write(result.payload.decode(errors="replace") + "\n")
        return 0 if result.ok else 1


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
            return asyncio.run(_invoke(args))
    except (PortInUseError, TerraformError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2
