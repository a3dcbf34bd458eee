"""Configuration of the local stack: the variables of README's "Local development" and "Function
configuration" (docs/protocol.md), plus knobs tests need."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_JWT_SECRET", "FUNCTION_SETTINGS", "LOG_FORMATS", "REPO_ROOT", "StackConfig"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JWT_SECRET = "local-dev-only-secret-do-not-use-in-aws"  # noqa: S105 - documented local-only value
DEFAULT_STATE_DIR = REPO_ROOT / ".local-stack"
LOG_FORMATS = ("text", "json")

# The functions' documented settings (README "Function configuration"). Set in the environment of
# `make dev`, each reaches every function whose Terraform environment has it (JWT_* ones: every function
# with a JWT_* variable), over the value Terraform's default would give.
FUNCTION_SETTINGS = (
    "JWT_ALGORITHMS",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_JWKS_TIMEOUT_SECONDS",
    "JWT_LEEWAY_SECONDS",
    "MAX_MESSAGE_BYTES",
    "BROADCAST_CONCURRENCY",
    "FANOUT_SHARD_SIZE",
    "MAX_ROOMS_PER_CONNECTION",
    "RATE_LIMIT_PER_SECOND",
    "RATE_LIMIT_BURST",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
)


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a port number, got {raw!r}") from exc


@dataclass(frozen=True)
class StackConfig:
    """Everything :func:`local_stack.run_stack` needs. Ports may be 0 (a free port is picked);
    ``web_port=None`` runs no web server."""

    ws_port: int = 3001
    web_port: int | None = 3000
    host: str = "127.0.0.1"
    stage: str = "dev"
    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_jwks_url: str = ""
    dynamodb_endpoint: str | None = None
    region: str = "us-east-1"
    table_name: str = "chat_connections"

    repo_root: Path = REPO_ROOT
    terraform_dirs: tuple[Path, ...] = (REPO_ROOT / "terraform",)
    functions_dir: Path = REPO_ROOT / "lambdas"
    shared_dir: Path = REPO_ROOT / "shared"
    web_dir: Path = REPO_ROOT / "web"
    tf_vars: Mapping[str, Any] = field(default_factory=dict)  # like terraform -var
    function_urls: Mapping[str, str] = field(default_factory=dict)  # function -> RIE invoke URL
    only_functions: tuple[str, ...] | None = None  # run just these (the invoke command)

    min_workers: int = 1  # pre-warmed execution environments per function
    max_workers: int = 4  # concurrent executions per function
    idle_timeout_s: float = 600.0
    max_duration_s: float = 7200.0
    integration_timeout_s: float = 29.0
    frame_bytes: int = 32 * 1024
    message_bytes: int = 128 * 1024
    ttl_reaper_interval_s: float = 30.0
    verify_signatures: bool = False  # @connections checks SigV4 against the functions' dummy credentials
    reload: bool = True
    reload_interval_s: float = 1.0
    echo_logs: bool = True  # print function logs (prefixed) to stdout
    log_format: str = "text"  # printed function logs: "text" (one readable line each) or "json" (raw)
    function_settings: Mapping[str, str] = field(default_factory=dict)  # FUNCTION_SETTINGS given
    state_dir: Path | None = None  # write stack-<ws_port>.json there while running (for `invoke`)

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        unknown = sorted(set(self.function_settings) - set(FUNCTION_SETTINGS))
        if unknown:
            raise ValueError(f"not a function setting: {', '.join(unknown)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> StackConfig:
        env = os.environ if env is None else env
        config = cls(
            ws_port=_int_env(env, "WS_PORT", 3001),
            web_port=_int_env(env, "WEB_PORT", 3000),
            stage=env.get("STAGE") or "dev",
            jwt_secret=env.get("JWT_SECRET") or DEFAULT_JWT_SECRET,
            jwt_jwks_url=env.get("JWT_JWKS_URL", ""),
            dynamodb_endpoint=env.get("DYNAMODB_ENDPOINT") or None,
            region=env.get("AWS_REGION") or "us-east-1",
            log_format=env.get("LOG_FORMAT") or "text",
            function_settings={name: env[name] for name in FUNCTION_SETTINGS if env.get(name)},
        )
        return replace(config, **overrides) if overrides else config
