"""Shared by every test folder: safe AWS defaults, and ``load_function`` (the kit's)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Never reach a real account from a test, whatever the developer's shell holds.
for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION=os.environ.get("AWS_REGION", "us-east-1"),
    AWS_REGION=os.environ.get("AWS_REGION", "us-east-1"),
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="ChatBackendTest",
    POWERTOOLS_SERVICE_NAME="chat-test",
)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from local_stack.testing import load_function  # noqa: E402  (needs the path set up above)

__all__ = ["load_function"]
