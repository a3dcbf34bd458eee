"""The local stack: API Gateway WebSocket + @connections, Lambda (awslambdaric) and DynamoDB on a laptop.

``python -m local_stack up|token|invoke``; programmatic use: :func:`run_stack` / :class:`StackThread`.
"""

from .config import DEFAULT_JWT_SECRET, StackConfig
from .stack import PortInUseError, Stack, StackThread, run_stack
from .terraform import TerraformError

__all__ = [
    "DEFAULT_JWT_SECRET",
    "PortInUseError",
    "Stack",
    "StackConfig",
    "StackThread",
    "TerraformError",
    "run_stack",
]
