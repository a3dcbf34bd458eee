"""What the local stack reads from the Terraform module, evaluated by the module's one reader (hcl.py).

Terraform is the one source of truth: the functions from ``local.functions`` (those with a
``route_key`` serve that route; a null or absent one is invoked, not routed), the route selection
expression from ``aws_apigatewayv2_api.websocket``, every table's keys, GSIs and TTL attribute from its
``aws_dynamodb_table``, each function's environment from ``merge(local.common_env,
local.functions[fn].environment)``. Environment values are evaluated per stack with local values
(:func:`evaluate_environment`); one that cannot be evaluated locally is reported, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hcl import Evaluator, HclError, Module, Ref, expand_dynamic, to_text

__all__ = [
    "FunctionSpec",
    "IndexSpec",
    "TableSpec",
    "TerraformError",
    "TerraformModel",
    "evaluate_environment",
    "load_model",
]

API_RESOURCE = "aws_apigatewayv2_api.websocket"
TABLE_TYPE = "aws_dynamodb_table"
CONNECTIONS_TABLE = "connections"


class TerraformError(Exception):
    """The Terraform module lacks something the local stack needs (or has it in an unreadable form)."""


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    route_key: str | None  # None: no API route (invoked directly, e.g. by an event source)
    timeout: int
    memory_size: int
    route_response: bool
    environment: Mapping[str, Any]  # raw values, common_env merged in


@dataclass(frozen=True)
class IndexSpec:
    name: str
    hash_key: str
    range_key: str | None
    projection_type: str
    non_key_attributes: tuple[str, ...]


@dataclass(frozen=True)
class TableSpec:
    hash_key: str
    range_key: str | None
    attributes: Mapping[str, str]  # name -> S/N/B
    indexes: tuple[IndexSpec, ...]
    ttl_attribute: str | None


@dataclass
class TerraformModel:
    route_selection_expression: str
    functions: dict[str, FunctionSpec]
    tables: dict[str, TableSpec]  # every aws_dynamodb_table, by resource name ("connections", "messages")
    module: Module

    @property
    def table(self) -> TableSpec:
        """The connections table (``aws_dynamodb_table.connections``)."""
        return self.tables[CONNECTIONS_TABLE]

    @property
    def route_keys(self) -> dict[str, str]:
        """The route key of each function that serves an API route."""
        return {name: spec.route_key for name, spec in self.functions.items() if spec.route_key is not None}


def _value(evaluator: Evaluator, raw: Any, what: str) -> Any:
    try:
        return evaluator.value(raw)
    except HclError as exc:
        raise TerraformError(f"{what}: {exc}") from exc


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise TerraformError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def _table_spec(evaluator: Evaluator, name: str, body: Mapping[str, Any]) -> TableSpec:
    what = f"{TABLE_TYPE}.{name}"
    if "hash_key" not in body:
        raise TerraformError(f"{what} has no hash_key")
    try:
        attributes = {a["name"]: a["type"] for a in expand_dynamic(evaluator, dict(body), "attribute")}
        gsis = expand_dynamic(evaluator, dict(body), "global_secondary_index")
        ttls = [evaluator.value(ttl) for ttl in body.get("ttl", [])]
        hash_key, range_key = evaluator.value(body["hash_key"]), evaluator.value(body.get("range_key"))
    except (HclError, KeyError) as exc:
        raise TerraformError(f"{what}: {exc}") from exc
    indexes = tuple(
        IndexSpec(
            name=gsi["name"],
            hash_key=gsi["hash_key"],
            range_key=gsi.get("range_key"),
            projection_type=gsi.get("projection_type", "ALL"),
            non_key_attributes=tuple(gsi.get("non_key_attributes", [])),
        )
        for gsi in gsis
    )
    ttl_attribute = next((t["attribute_name"] for t in ttls if t.get("enabled") is True), None)
    return TableSpec(hash_key, range_key, attributes, indexes, ttl_attribute)


def load_model(dirs: Iterable[Path]) -> TerraformModel:
    """Read the module in ``dirs`` (later directories replace blocks of the same address)."""
    dirs = list(dirs)
    try:
        module = Module.load(*dirs)
        evaluator = Evaluator(module, module.defaults())
    except HclError as exc:
        raise TerraformError(str(exc)) from exc
    if not module.files:
        raise TerraformError(f"no *.tf files in {', '.join(map(str, dirs))}")

    api = module.resources.get(API_RESOURCE)
    if api is None:
        raise TerraformError(f"terraform/ defines no {API_RESOURCE} (route_selection_expression)")
    expression = _value(evaluator, api.get("route_selection_expression"), API_RESOURCE)
    if not isinstance(expression, str) or not expression:
        raise TerraformError(f"{API_RESOURCE} has no route_selection_expression")

    tables = {
        address.split(".", 1)[1]: _table_spec(evaluator, address.split(".", 1)[1], body)
        for address, body in module.resources.items()
        if address.startswith(TABLE_TYPE + ".")
    }
    if CONNECTIONS_TABLE not in tables:
        raise TerraformError(f"terraform/ defines no {TABLE_TYPE}.{CONNECTIONS_TABLE}")

    raw_functions = module.locals.get("functions")
    if not isinstance(raw_functions, dict) or not raw_functions:
        raise TerraformError("terraform/ defines no local.functions map (an object literal)")
    common_env = module.locals.get("common_env") or {}
    functions: dict[str, FunctionSpec] = {}
    for name, body in raw_functions.items():
        what = f"local.functions.{name}"
        route_key = _value(evaluator, body.get("route_key"), f"{what}.route_key")
        if route_key is not None and not isinstance(route_key, str):
            raise TerraformError(f"{what}.route_key must be a string or null, got {route_key!r}")
        functions[name] = FunctionSpec(
            name=name,
            route_key=route_key,
            timeout=_as_int(_value(evaluator, body.get("timeout", 3), what), f"{what}.timeout"),
            memory_size=_as_int(_value(evaluator, body.get("memory_size", 128), what), f"{what}.memory_size"),
            route_response=_value(evaluator, body.get("route_response", False), what) is True,
            environment={**common_env, **(body.get("environment") or {})},
        )
    return TerraformModel(expression, functions, tables, module)


def _typed(module: Module, name: str, value: Any) -> Any:
    """A ``-var NAME=VALUE`` string as the variable's declared type takes it."""
    declared = module.variables.get(name, {}).get("type")
    if not isinstance(value, str) or not isinstance(declared, str):
        return value
    kind = declared.removeprefix("${").removesuffix("}").split("(", 1)[0].strip()
    try:
        if kind == "number":
            number = float(value)
            return int(number) if number.is_integer() else number
        if kind == "bool":
            return {"true": True, "false": False}[value]
        if kind in ("list", "set", "tuple", "map", "object"):
            return json.loads(value)
    except (ValueError, KeyError) as exc:
        raise TerraformError(f"variable {name} is a {kind}: cannot read {value!r} as one") from exc
    return value


def _env_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(_env_text(v) for v in value)
    if isinstance(value, Ref) or (isinstance(value, str) and "${" in value):
        raise HclError(f"{value} is only known after apply")
    return to_text(value)


def evaluate_environment(
    model: TerraformModel,
    spec: FunctionSpec,
    *,
    tf_vars: Mapping[str, Any],
    known: Mapping[str, Any],
) -> tuple[dict[str, str], list[str]]:
    """The function's environment with local values: the module's variable defaults, ``tf_vars``
    (like ``terraform -var``) and ``known`` addresses (``local.callback_url``,
    ``aws_dynamodb_table.<name>.name``). Returns it and what could not be evaluated (passed as ``""``)."""
    module = model.module
    variables = module.defaults()
    variables.update({name: _typed(module, name, value) for name, value in tf_vars.items()})
    evaluator = Evaluator(module, variables, known=known)
    env: dict[str, str] = {}
    unresolved: list[str] = []
    for name, raw in spec.environment.items():
        try:
            env[name] = _env_text(evaluator.value(raw))
        except HclError as exc:
            unresolved.append(f"{name} = {raw} ({exc})")
            env[name] = ""
    return env, unresolved
