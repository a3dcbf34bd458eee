"""Loading a function's handler module the way its image does: module ``app``, cold start included."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
_counter = itertools.count()


def load_function(name: str) -> ModuleType:
    """Import ``lambdas/<name>/app.py`` afresh: its module-level init (config, clients) runs again."""
    path = LAMBDAS / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{name}_{next(_counter)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
