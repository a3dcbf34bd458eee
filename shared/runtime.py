"""A function's init, once per execution environment: garbage collection and the botocore session.

Every ``lambdas/<fn>/app.py`` imports this module before its other ``shared`` modules and calls
``init_done()`` as its last line.

- Garbage collection: init (Powertools, botocore's service models and clients) allocates hundreds of
  thousands of objects, none of them garbage, and the collector's passes over them were ~45 ms of a
  cold start. In a Lambda execution environment (``AWS_LAMBDA_FUNCTION_NAME`` set, as Lambda and the local
  stack's function processes set it) importing this module pauses the collector; ``init_done()`` moves
  everything init made into the permanent generation (``gc.freeze()``: later collections never walk it)
  and resumes collection. Anywhere else (tests, benchmarks) importing it changes nothing.
- One botocore session per process: ``botocore_session()`` is boto3's default session's when boto3 is
  loaded (the DynamoDB client's, ``boto3.client``), so the management API client shares its credentials,
  region and loaded data files instead of resolving them again.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from typing import Any

_paused = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and gc.isenabled()
if _paused:
    gc.disable()

_lock = threading.Lock()
_own_session: Any = None


def init_done() -> None:
    """End of a function's init: freeze what it allocated and resume garbage collection (once)."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False


def botocore_session() -> Any:
    """The process's botocore session: boto3's default session's when boto3 is loaded, else one of our own."""
    global _own_session
    with _lock:
        boto3 = sys.modules.get("boto3")
        if boto3 is not None:
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session(**({"botocore_session": _own_session} if _own_session else {}))
            return boto3.DEFAULT_SESSION._session  # boto3.Session has no public accessor for it
        if _own_session is None:
            import botocore.session

            _own_session = botocore.session.get_session()
        return _own_session
