"""Tests of the Terraform module, read with the local stack's reader (local_stack/hcl.py)."""

from __future__ import annotations

from pathlib import Path

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
