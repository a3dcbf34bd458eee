"""Tests of the Terraform module, read with the local stack's reader (local_stack/hcl.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from local_stack.hcl import Evaluator, Module

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "terraform"
EXAMPLE_DIR = MODULE_DIR / "examples" / "complete"


def function_keys(directory: Path = MODULE_DIR) -> tuple[str, ...]:
    """The keys of terraform/functions.tf's local.functions: tests parametrise over these, so a new
    function is covered without editing them."""
    module = Module.load(directory)
    functions = Evaluator(module, module.defaults()).local("functions")
    return tuple(functions)


def readme_section(heading: str) -> str:
    """The text under ``heading`` ("## Name") of terraform/README.md, up to the next heading of its level."""
    text = (MODULE_DIR / "README.md").read_text()
    level = len(heading.split()[0])
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^#{{1,{level}}} )", text, re.MULTILINE | re.DOTALL)
    assert match, f"terraform/README.md has no {heading!r} section"
    return match.group(1)


def with_values(evaluator: Evaluator, **changes: Any) -> Evaluator:
    """The same module evaluated with some variables changed."""
    return Evaluator(evaluator.module, {**evaluator.variables, **changes})
