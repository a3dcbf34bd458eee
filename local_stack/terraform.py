"""What the local stack reads from the Terraform module, evaluated by the module's one reader (hcl.py).

Terraform is the one source of truth: the functions from ``local.functions`` (those with a
``route_key`` serve that route; a null or absent one is invoked, not routed), the route selection
expression from ``aws_apigatewayv2_api.websocket``, every table's keys, GSIs and TTL attribute from its
``aws_dynamodb_table``, each function's environment from ``merge(local.common_env,
local.functions[fn].environment)``. Environment values are evaluated per stack with local values
(:func:`evaluate_environment`); one that cannot be evaluated locally is reported, never guessed.
Every ``aws_sqs_queue`` and every ``aws_lambda_event_source_mapping`` from one (:func:`queue_specs`,
:func:`event_source_mappings`) is read the same way; a setting of theirs that cannot be evaluated is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hcl import (
    Evaluator,
    HclError,
    Module,
    Ref,
    expand_dynamic,
    expression_source,
    parse_expression,
    to_text,
)

__all__ = [
    "EventSourceMappingSpec",
    "FunctionSpec",
    "IndexSpec",
    "QueueSpec",
    "TableSpec",
    "TerraformError",
    "TerraformModel",
    "evaluate_environment",
    "event_source_mappings",
    "load_model",
    "queue_specs",
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


def _variables(module: Module, tf_vars: Mapping[str, Any] | None) -> dict[str, Any]:
    """The module's variable defaults with ``tf_vars`` (like ``terraform -var``) over them."""
    variables = module.defaults()
    variables.update({name: _typed(module, name, value) for name, value in (tf_vars or {}).items()})
    return variables


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
    evaluator = Evaluator(model.module, _variables(model.module, tf_vars), known=known)
    env: dict[str, str] = {}
    unresolved: list[str] = []
    for name, raw in spec.environment.items():
        try:
            env[name] = _env_text(evaluator.value(raw))
        except HclError as exc:
            unresolved.append(f"{name} = {raw} ({exc})")
            env[name] = ""
    return env, unresolved


# -- SQS queues and their Lambda event source mappings -------------------------------------------------
QUEUE_TYPE = "aws_sqs_queue"
MAPPING_TYPE = "aws_lambda_event_source_mapping"
FUNCTION_TYPE = "aws_lambda_function"


@dataclass(frozen=True)
class QueueSpec:
    """One ``aws_sqs_queue`` with AWS's defaults for what it leaves out."""

    resource: str
    name: str  # Terraform's name when it evaluates locally, else the resource name
    fifo: bool
    visibility_timeout_s: int
    message_retention_s: int
    receive_wait_time_s: int
    delay_s: int
    max_message_size: int
    dead_letter_queue: str | None  # the redrive policy's target, as an aws_sqs_queue resource name
    max_receive_count: int | None


@dataclass(frozen=True)
class EventSourceMappingSpec:
    """One ``aws_lambda_event_source_mapping`` from an SQS queue, with AWS's defaults."""

    resource: str
    queue: str  # aws_sqs_queue resource name
    function: str  # key of local.functions
    batch_size: int
    batching_window_s: float
    maximum_concurrency: int | None  # scaling_config; None: Lambda's own scaling
    report_batch_item_failures: bool  # function_response_types has ReportBatchItemFailures
    enabled: bool


def _setting(evaluator: Evaluator, body: Mapping[str, Any], key: str, default: Any, what: str) -> Any:
    if key not in body:
        return default
    try:
        return evaluator.value(body[key])
    except HclError as exc:
        raise TerraformError(f"{what}.{key}: cannot evaluate {body[key]!r} locally ({exc})") from exc


def _int_setting(evaluator: Evaluator, body: Mapping[str, Any], key: str, default: int, what: str) -> int:
    return _as_int(_setting(evaluator, body, key, default, what), f"{what}.{key}")


def _bool_setting(evaluator: Evaluator, body: Mapping[str, Any], key: str, default: bool, what: str) -> bool:
    value = _setting(evaluator, body, key, default, what)
    if not isinstance(value, bool):
        raise TerraformError(f"{what}.{key} must be true or false, got {value!r}")
    return value


def _queue_of(value: Any, attribute: str) -> str | None:
    """``aws_sqs_queue.<name>.<attribute>`` (a value only known after apply): the queue's resource name."""
    if isinstance(value, Ref):
        rtype, _, rest = value.address.partition(".")
        name, _, attr = rest.partition(".")
        if rtype == QUEUE_TYPE and attr == attribute and name and "[" not in name:
            return name
    return None


def _dead_letter_queue(evaluator: Evaluator, body: Mapping[str, Any], what: str) -> tuple[str, int]:
    """The redrive policy's target queue (``aws_sqs_queue.<name>.arn``) and maxReceiveCount."""
    policy = _setting(evaluator, body, "redrive_policy", None, what)
    try:
        parsed = json.loads(policy) if isinstance(policy, str) else policy
        target, count = parsed["deadLetterTargetArn"], parsed["maxReceiveCount"]
    except (TypeError, ValueError, KeyError) as exc:
        raise TerraformError(f"{what}.redrive_policy: cannot read {policy!r} as a redrive policy") from exc
    # jsonencode() writes a value only known after apply as its ${address}
    address = target[2:-1] if isinstance(target, str) and target.startswith("${") else ""
    queue = _queue_of(Ref(address), "arn")
    if queue is None:
        raise TerraformError(f"{what}.redrive_policy: deadLetterTargetArn must be aws_sqs_queue.<name>.arn")
    return queue, _as_int(count, f"{what}.redrive_policy.maxReceiveCount")


def queue_specs(model: TerraformModel, tf_vars: Mapping[str, Any] | None = None) -> dict[str, QueueSpec]:
    """Every ``aws_sqs_queue`` of the module, its values evaluated with ``tf_vars`` over the defaults."""
    evaluator = Evaluator(model.module, _variables(model.module, tf_vars))
    specs: dict[str, QueueSpec] = {}
    for address, body in model.module.resources.items():
        rtype, resource = address.split(".", 1)
        if rtype != QUEUE_TYPE:
            continue
        what = address
        try:
            name = evaluator.value(body["name"]) if "name" in body else None
        except HclError:
            name = None  # a name only known after apply: the resource name stands in
        dlq, max_receive = (
            _dead_letter_queue(evaluator, body, what) if "redrive_policy" in body else (None, None)
        )
        specs[resource] = QueueSpec(
            resource=resource,
            name=name if isinstance(name, str) and name else resource,
            fifo=_bool_setting(evaluator, body, "fifo_queue", False, what),
            visibility_timeout_s=_int_setting(evaluator, body, "visibility_timeout_seconds", 30, what),
            message_retention_s=_int_setting(evaluator, body, "message_retention_seconds", 345600, what),
            receive_wait_time_s=_int_setting(evaluator, body, "receive_wait_time_seconds", 0, what),
            delay_s=_int_setting(evaluator, body, "delay_seconds", 0, what),
            max_message_size=_int_setting(evaluator, body, "max_message_size", 262144, what),
            dead_letter_queue=dlq,
            max_receive_count=max_receive,
        )
    for spec in specs.values():
        if spec.dead_letter_queue is not None and spec.dead_letter_queue not in specs:
            raise TerraformError(
                f"{QUEUE_TYPE}.{spec.resource}: its dead-letter queue {QUEUE_TYPE}.{spec.dead_letter_queue} "
                "is not defined"
            )
    return specs


def _mapped_function(evaluator: Evaluator, raw: Any, what: str) -> str:
    """The ``local.functions`` key of ``aws_lambda_function.<name>["<key>"].arn`` (or a literal name),
    read without expanding the function's for_each: a test route table may not have that function."""
    try:
        node = parse_expression(expression_source(raw)) if isinstance(raw, str) else ("lit", raw)
        while node[0] == "attr" and node[1][0] == "index":
            node = node[1]  # ...["key"].arn -> ...["key"]
        if node[0] == "index" and node[1][0] == "attr" and node[1][1] == ("ref", FUNCTION_TYPE):
            key = evaluator.node(node[2], {})
        else:
            key = evaluator.node(node, {})
    except HclError as exc:
        raise TerraformError(f"{what}.function_name: cannot evaluate {raw!r} locally ({exc})") from exc
    if not isinstance(key, str) or not key or "${" in key:
        raise TerraformError(
            f'{what}.function_name: {raw!r} names no function ({FUNCTION_TYPE}.this["<key>"])'
        )
    return key


def event_source_mappings(
    model: TerraformModel, tf_vars: Mapping[str, Any] | None = None
) -> dict[str, EventSourceMappingSpec]:
    """Every ``aws_lambda_event_source_mapping`` whose source is an ``aws_sqs_queue`` of the module
    (other sources, streams, are not polled locally), evaluated like :func:`queue_specs`. Its function is
    a key of ``local.functions`` or not (a test route table replaces them): the stack polls only for the
    functions it runs."""
    evaluator = Evaluator(model.module, _variables(model.module, tf_vars))
    specs: dict[str, EventSourceMappingSpec] = {}
    for address, body in model.module.resources.items():
        rtype, resource = address.split(".", 1)
        if rtype != MAPPING_TYPE:
            continue
        what = address
        queue = _queue_of(_setting(evaluator, body, "event_source_arn", None, what), "arn")
        if queue is None:
            continue
        if f"{QUEUE_TYPE}.{queue}" not in model.module.resources:
            raise TerraformError(f"{what}: {QUEUE_TYPE}.{queue} is not defined")
        concurrency: int | None = None
        for block in body.get("scaling_config", []):
            if "maximum_concurrency" in block:
                concurrency = _int_setting(
                    evaluator, block, "maximum_concurrency", 0, f"{what}.scaling_config"
                )
        types = _setting(evaluator, body, "function_response_types", [], what)
        specs[resource] = EventSourceMappingSpec(
            resource=resource,
            queue=queue,
            function=_mapped_function(evaluator, body.get("function_name"), what),
            batch_size=_int_setting(evaluator, body, "batch_size", 10, what),
            batching_window_s=_int_setting(evaluator, body, "maximum_batching_window_in_seconds", 0, what),
            maximum_concurrency=concurrency,
            report_batch_item_failures=isinstance(types, list) and "ReportBatchItemFailures" in types,
            enabled=_bool_setting(evaluator, body, "enabled", True, what),
        )
    return specs
