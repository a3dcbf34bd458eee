"""Process-wide settings every benchmark needs: fake AWS credentials (every endpoint is on 127.0.0.1 or
moto: never a real account), quiet Powertools, the repo on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAMBDAS = ROOT / "lambdas"
TABLE = "chat_connections"
MESSAGES_TABLE = "chat_messages"
MEMBERSHIPS_TABLE = "chat_memberships"
REGION = "us-east-1"

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "chat-bench",
    "POWERTOOLS_METRICS_NAMESPACE": "ChatBench",
    # One INFO line per invocation would flood the tables; WARNING keeps failures visible.
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def setup() -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def functions() -> list[str]:
    return sorted(p.parent.name for p in LAMBDAS.glob("*/app.py"))
