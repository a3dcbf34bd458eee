"""make deploy/destroy target addresses that exist in the module, for terraform/ and examples/complete."""

from __future__ import annotations

import re

from tests.iac.hcl import ROOT, Module

PREFIX = "$(TF_TARGET_PREFIX)"


def _recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, f"the Makefile has no {target} target"
    return match.group(1)


def test_every_target_address_is_prefixed_and_exists(module: Module) -> None:
    assert re.search(r"^TF_TARGET_PREFIX \?=\s*$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    for target in ("deploy", "destroy"):
        addresses = re.findall(r"-target=(\S+)", _recipe(target))
        assert addresses, f"make {target} has no -target"
        for address in addresses:
            assert address.startswith(PREFIX), f"make {target}: {address} ignores TF_TARGET_PREFIX"
            assert address.removeprefix(PREFIX) in module.resources, f"make {target}: no {address}"


def test_the_example_calls_the_module_as_the_documented_prefix(example: Module) -> None:
    readme = (ROOT / "terraform" / "README.md").read_text()
    assert "make deploy TF_DIR=terraform/examples/complete TF_TARGET_PREFIX=module.chat." in readme
    assert "chat" in example.modules


def test_destroy_vars_are_declared_by_every_root(module: Module, example: Module) -> None:
    names = set(re.findall(r"-var (\w+)=", _recipe("destroy")))
    assert names
    for root in (module, example):
        assert names <= set(root.variables), f"{root.directory}: make destroy passes undeclared variables"


def test_no_arn_hard_codes_the_aws_partition(module: Module, example: Module) -> None:
    for root in (module, example):
        for address, body in {**root.resources, **root.modules}.items():
            assert "arn:aws:" not in str(body), (
                f"{root.directory}: {address} hard-codes arn:aws: (use data.aws_partition)"
            )
