"""Every Terraform gotcha of shared/AWS-FACTS.md holds for the module and is caught in the seed's HCL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.iac.gotchas import CHECKS, dependency_graph_is_acyclic
from tests.iac.hcl import Evaluator, Module


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_module_passes(name: str, module: Module, defaults: Evaluator, complete: Evaluator) -> None:
    for evaluator in (defaults, complete):
        assert CHECKS[name](module, evaluator) == []


@pytest.mark.parametrize("name", sorted(set(CHECKS) - {"dependency_graph_is_acyclic"}))
def test_seed_fails(name: str, seed: Module) -> None:
    problems = CHECKS[name](seed, Evaluator(seed, {}, lenient=True))
    assert problems, f"{name} finds nothing wrong in the seed's HCL: it would not catch the seed's mistake"


def test_cycle_check_catches_a_cycle() -> None:
    cyclic = Module(directory=Path("."))
    cyclic.resources = {
        "aws_lambda_function.a": {
            "environment": [{"variables": {"URL": "${aws_apigatewayv2_stage.s.invoke_url}"}}]
        },
        "aws_apigatewayv2_stage.s": {"deployment_id": "${aws_lambda_function.a.arn}"},
    }
    assert dependency_graph_is_acyclic(cyclic, Evaluator(cyclic, {})) != []
