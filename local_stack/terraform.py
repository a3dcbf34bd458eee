"""Read what the local stack needs from the Terraform module (python-hcl2), and nothing more.

Terraform is the one source of truth: routes and the functions serving them come from
``local.functions``, the route selection expression from ``aws_apigatewayv2_api.websocket``, every
table's keys, GSIs and TTL attribute from its ``aws_dynamodb_table``, each function's environment
variable *names* from ``merge(local.common_env, local.functions[fn].environment)``. Values are AWS
values; the stack substitutes local ones (``local_stack.stack.function_environment``).

python-hcl2 keeps the quotes of string literals (``"\\"$connect\\""``) and gives expressions as
``"${...}"``; :func:`literal` undoes the first, :class:`Evaluator` understands the few expression forms
the module uses in environments (``var.X``, ``tostring(var.X)``, ``join(",", var.X)``, ``local.X``,
``aws_dynamodb_table.<name>.name``) and reports anything else instead of guessing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

__all__ = [
    "Evaluator",
    "EventSourceMappingSpec",
    "FunctionSpec",
    "IndexSpec",
    "QueueSpec",
    "TableSpec",
    "TerraformError",
    "TerraformModel",
    "event_source_mappings",
    "literal",
    "load_model",
    "queue_specs",
]

API_RESOURCE = ("aws_apigatewayv2_api", "websocket")
TABLE_TYPE = "aws_dynamodb_table"
CONNECTIONS_TABLE = "connections"


class TerraformError(Exception):
    """The Terraform module lacks something the local stack needs (or has it in an unreadable form)."""


def literal(value: Any) -> Any:
    """Strip python-hcl2's quotes from a string literal; other values are returned unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if isinstance(value, list):
        return [literal(v) for v in value]
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items() if k != "__is_block__"}
    return value


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    route_key: str | None  # None: no route (invoked by an event source mapping or directly)
    timeout: int
    memory_size: int
    route_response: bool
    environment: Mapping[str, Any]  # raw hcl2 values, common_env merged in


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
    variables: dict[str, Any]  # defaults, literal values
    locals: dict[str, Any]  # raw hcl2 values
    resources: dict[tuple[str, str], Any] = field(default_factory=dict)  # raw, by (type, name)

    @property
    def table(self) -> TableSpec:
        """The connections table (``aws_dynamodb_table.connections``)."""
        return self.tables[CONNECTIONS_TABLE]


def _unquote_key(key: str) -> str:
    return key[1:-1] if key.startswith('"') and key.endswith('"') else key


def _parse_files(
    dirs: Iterable[Path],
) -> tuple[dict[str, Any], dict[tuple[str, str], Any], dict[str, Any], list[Path]]:
    """Merge every ``*.tf`` of ``dirs`` in order: a later directory overrides locals, resources and
    variables of the same name (how a test-only route table replaces ``local.functions``)."""
    locals_: dict[str, Any] = {}
    resources: dict[tuple[str, str], Any] = {}
    variables: dict[str, Any] = {}
    files: list[Path] = []
    for directory in dirs:
        for path in sorted(Path(directory).glob("*.tf")):
            try:
                with path.open(encoding="utf-8") as fh:
                    doc = hcl2.load(fh)
            except Exception as exc:
                raise TerraformError(f"{path}: cannot parse: {exc}") from exc
            files.append(path)
            for block in doc.get("locals", []):
                locals_.update({k: v for k, v in block.items() if k != "__is_block__"})
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        resources[(_unquote_key(rtype), _unquote_key(rname))] = body
            for block in doc.get("variable", []):
                for vname, body in block.items():
                    variables[_unquote_key(vname)] = literal(body.get("default"))
    return locals_, resources, variables, files


def _as_int(value: Any, what: str) -> int:
    value = literal(value)
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise TerraformError(f"{what} must be a number, got {value!r}") from exc


def _as_bool(value: Any) -> bool:
    value = literal(value)
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _table_spec(name: str, body: Mapping[str, Any]) -> TableSpec:
    attributes = {literal(a["name"]): literal(a["type"]) for a in body.get("attribute", [])}
    indexes = []
    for gsi in body.get("global_secondary_index", []):
        indexes.append(
            IndexSpec(
                name=literal(gsi["name"]),
                hash_key=literal(gsi["hash_key"]),
                range_key=literal(gsi.get("range_key")),
                projection_type=literal(gsi.get("projection_type", '"ALL"')),
                non_key_attributes=tuple(literal(gsi.get("non_key_attributes", []))),
            )
        )
    ttl_attr = None
    for ttl in body.get("ttl", []):
        if _as_bool(ttl.get("enabled", False)):
            ttl_attr = literal(ttl["attribute_name"])
    if "hash_key" not in body:
        raise TerraformError(f"aws_dynamodb_table.{name} has no hash_key")
    return TableSpec(
        hash_key=literal(body["hash_key"]),
        range_key=literal(body.get("range_key")),
        attributes=attributes,
        indexes=tuple(indexes),
        ttl_attribute=ttl_attr,
    )


def load_model(dirs: Iterable[Path]) -> TerraformModel:
    """Read the module in ``dirs`` (later directories override earlier ones)."""
    dirs = list(dirs)
    locals_, resources, variables, files = _parse_files(dirs)
    if not files:
        raise TerraformError(f"no *.tf files in {', '.join(map(str, dirs))}")

    api = resources.get(API_RESOURCE)
    if api is None:
        raise TerraformError(
            "terraform/ defines no aws_apigatewayv2_api.websocket (route_selection_expression)"
        )
    expression = literal(api.get("route_selection_expression", ""))
    if not isinstance(expression, str) or not expression:
        raise TerraformError("aws_apigatewayv2_api.websocket has no route_selection_expression")

    tables = {
        name: _table_spec(name, body) for (rtype, name), body in resources.items() if rtype == TABLE_TYPE
    }
    if CONNECTIONS_TABLE not in tables:
        raise TerraformError("terraform/ defines no aws_dynamodb_table.connections")

    raw_functions = locals_.get("functions")
    if not isinstance(raw_functions, dict) or not raw_functions:
        raise TerraformError("terraform/ defines no local.functions map")
    common_env = locals_.get("common_env") or {}
    functions: dict[str, FunctionSpec] = {}
    for name, body in raw_functions.items():
        env = dict(common_env)
        env.update(body.get("environment") or {})
        env.pop("__is_block__", None)
        functions[name] = FunctionSpec(
            name=name,
            route_key=literal(body.get("route_key")),
            timeout=_as_int(body.get("timeout", 3), f"local.functions.{name}.timeout"),
            memory_size=_as_int(body.get("memory_size", 128), f"local.functions.{name}.memory_size"),
            route_response=_as_bool(body.get("route_response", False)),
            environment=env,
        )
    return TerraformModel(
        route_selection_expression=expression,
        functions=functions,
        tables=tables,
        variables=variables,
        locals=locals_,
        resources=resources,
    )


_CALL = re.compile(r"^(?P<fn>[a-z_]+)\((?P<args>.*)\)$", re.S)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_INTERP = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Evaluator:
    """Evaluates the environment expressions of ``local.functions`` with local values.

    ``references`` maps a full reference (``local.callback_url``,
    ``aws_dynamodb_table.connections.name``) to its local value. Anything it cannot evaluate becomes
    ``""`` and is listed in ``unresolved`` (the stack prints them), never a guess.
    """

    variables: Mapping[str, Any]
    references: Mapping[str, Any]
    locals: Mapping[str, Any] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)

    def value(self, raw: Any) -> str:
        """The environment-variable string for one raw hcl2 value."""
        return self._to_str(self._eval_raw(raw))

    def resolve(self, raw: Any) -> Any:
        """One raw hcl2 value evaluated (a number stays a number, ``jsonencode({...})`` a JSON string)."""
        return self._eval_raw(raw)

    def _eval_raw(self, raw: Any) -> Any:
        if isinstance(raw, bool | int | float) or raw is None:
            return raw
        if isinstance(raw, list):
            return [self._eval_raw(v) for v in raw]
        if not isinstance(raw, str):
            return raw
        if raw.startswith("${") and raw.endswith("}") and raw.count("${") == 1:
            return self._expr(raw[2:-1].strip())
        text = literal(raw)
        return _INTERP.sub(lambda m: self._to_str(self._expr(m.group(1).strip())), text)

    def _expr(self, expr: str) -> Any:
        if expr.startswith('"') and expr.endswith('"'):
            return literal(expr)
        if expr in self.references:
            return self.references[expr]
        if expr.startswith("var."):
            name = expr[4:]
            if name in self.variables:
                return self.variables[name]
            self.unresolved.append(expr)
            return ""
        if _NUMBER.match(expr):
            return float(expr) if "." in expr else int(expr)
        arithmetic = _split_operator(expr)
        if arithmetic is not None:
            left, op, right = arithmetic
            a, b = self._expr(left), self._expr(right)
            if isinstance(a, int | float) and isinstance(b, int | float):
                return a * b if op == "*" else a + b if op == "+" else a - b
            self.unresolved.append(expr)
            return ""
        if expr.startswith("local."):
            name, *path = expr[6:].split(".")
            if name in self.locals and not path and not isinstance(self.locals[name], dict):
                return self._eval_raw(self.locals[name])
            node: Any = self.locals.get(name)
            for part in path:  # local.functions.fanout.timeout
                node = node.get(part) if isinstance(node, dict) else None
            if path and node is not None and not isinstance(node, dict):
                return self._eval_raw(node)
            self.unresolved.append(expr)
            return ""
        if expr.startswith("{") and expr.endswith("}"):
            members = {}
            for item in _split_args(expr[1:-1]):
                key, sep, value = item.partition("=")
                if not sep:
                    self.unresolved.append(expr)
                    return ""
                members[literal(key.strip())] = self._expr(value.strip())
            return members
        call = _CALL.match(expr)
        if call:
            fn, args = call.group("fn"), _split_args(call.group("args"))
            if fn == "jsonencode" and len(args) == 1:
                return json.dumps(self._expr(args[0]), separators=(",", ":"))
            if fn in ("max", "min") and args:
                numbers = [self._expr(a) for a in args]
                if all(isinstance(n, int | float) for n in numbers):
                    return max(numbers) if fn == "max" else min(numbers)
            if fn == "tostring" and len(args) == 1:
                return self._to_str(self._expr(args[0]))
            if fn == "join" and len(args) == 2:
                sep, items = self._expr(args[0]), self._expr(args[1])
                if isinstance(items, list):
                    return str(sep).join(self._to_str(i) for i in items)
                return self._to_str(items)
        self.unresolved.append(expr)
        return ""

    @staticmethod
    def _to_str(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return ",".join(Evaluator._to_str(v) for v in value)
        return str(value)


def _split_args(text: str) -> list[str]:
    """Split function arguments at top-level commas (strings may contain commas)."""
    args: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            args.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    if tail:
        args.append(tail)
    return args


def _split_operator(text: str) -> tuple[str, str, str] | None:
    """``a * b``, ``a + b`` or ``a - b`` at the top level, spaces around the operator; the last ``+``/``-``
    first (they bind loosest), else the last ``*`` (left-associative); None when there is none."""
    depth, quoted = 0, False
    found: dict[str, int] = {}
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
        elif not quoted and depth == 0 and ch in "*+-" and text[i - 1 : i] == text[i + 1 : i + 2] == " ":
            found["*" if ch == "*" else "+-"] = i
    at = found.get("+-", found.get("*"))
    if at is None:
        return None
    return text[:at].strip(), text[at], text[at + 1 :].strip()


# -- SQS queues and their Lambda event source mappings -------------------------------------------------
QUEUE_TYPE = "aws_sqs_queue"
MAPPING_TYPE = "aws_lambda_event_source_mapping"
_QUEUE_REF = re.compile(r"^\$\{aws_sqs_queue\.(?P<name>[A-Za-z0-9_-]+)\.(arn|id|url)\}$")
_FUNCTION_KEY = re.compile(r'\["(?P<key>[^"]+)"\]')


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


def _evaluator(model: TerraformModel, variables: Mapping[str, Any] | None) -> Evaluator:
    merged = dict(model.variables)
    merged.update(variables or {})
    return Evaluator(variables=merged, references={}, locals=model.locals)


def _resolved_int(evaluator: Evaluator, body: Mapping[str, Any], key: str, default: int, what: str) -> int:
    if key not in body:
        return default
    before = len(evaluator.unresolved)
    value = evaluator.resolve(body[key])
    if len(evaluator.unresolved) > before:
        raise TerraformError(f"{what}.{key}: cannot evaluate {body[key]!r} locally")
    return _as_int(value, f"{what}.{key}")


def queue_specs(model: TerraformModel, variables: Mapping[str, Any] | None = None) -> dict[str, QueueSpec]:
    """Every ``aws_sqs_queue`` of the module, its values evaluated with ``variables`` over the defaults."""
    evaluator = _evaluator(model, variables)
    specs: dict[str, QueueSpec] = {}
    for (rtype, resource), body in model.resources.items():
        if rtype != QUEUE_TYPE:
            continue
        what = f"{QUEUE_TYPE}.{resource}"
        before = len(evaluator.unresolved)
        name = evaluator.value(body["name"]) if "name" in body else ""
        if len(evaluator.unresolved) > before or not name:
            name = resource
        dlq: str | None = None
        max_receive: int | None = None
        if "redrive_policy" in body:
            before = len(evaluator.unresolved)
            policy_raw = body["redrive_policy"]
            target = None
            text = policy_raw if isinstance(policy_raw, str) else ""
            match = re.search(r"deadLetterTargetArn\s*=\s*aws_sqs_queue\.([A-Za-z0-9_-]+)\.arn", text)
            if match:
                target = match.group(1)
                text = text.replace(match.group(0), 'deadLetterTargetArn = "local"')
            policy = evaluator.resolve(text)
            try:
                parsed = json.loads(policy) if isinstance(policy, str) else policy
                max_receive = int(parsed["maxReceiveCount"])
            except (TypeError, ValueError, KeyError) as exc:
                raise TerraformError(
                    f"{what}.redrive_policy: cannot evaluate {policy_raw!r} locally"
                ) from exc
            if target is None or len(evaluator.unresolved) > before:
                raise TerraformError(
                    f"{what}.redrive_policy: deadLetterTargetArn must be aws_sqs_queue.<name>.arn"
                )
            dlq = target
        specs[resource] = QueueSpec(
            resource=resource,
            name=name,
            fifo=_as_bool(body.get("fifo_queue", False)),
            visibility_timeout_s=_resolved_int(evaluator, body, "visibility_timeout_seconds", 30, what),
            message_retention_s=_resolved_int(evaluator, body, "message_retention_seconds", 345600, what),
            receive_wait_time_s=_resolved_int(evaluator, body, "receive_wait_time_seconds", 0, what),
            delay_s=_resolved_int(evaluator, body, "delay_seconds", 0, what),
            max_message_size=_resolved_int(evaluator, body, "max_message_size", 262144, what),
            dead_letter_queue=dlq,
            max_receive_count=max_receive,
        )
    for spec in specs.values():
        if spec.dead_letter_queue is not None and spec.dead_letter_queue not in specs:
            raise TerraformError(
                f"{QUEUE_TYPE}.{spec.resource}: its dead-letter queue aws_sqs_queue.{spec.dead_letter_queue} "
                "is not defined"
            )
    return specs


def event_source_mappings(
    model: TerraformModel, variables: Mapping[str, Any] | None = None
) -> dict[str, EventSourceMappingSpec]:
    """Every ``aws_lambda_event_source_mapping`` whose source is an ``aws_sqs_queue`` of the module
    (other sources, streams, are not polled locally), evaluated like :func:`queue_specs`. Its function is
    a key of ``local.functions`` or not (a test route table replaces them): the stack polls only for the
    functions it runs."""
    evaluator = _evaluator(model, variables)
    specs: dict[str, EventSourceMappingSpec] = {}
    for (rtype, resource), body in model.resources.items():
        if rtype != MAPPING_TYPE:
            continue
        what = f"{MAPPING_TYPE}.{resource}"
        source = _QUEUE_REF.match(str(body.get("event_source_arn", "")))
        if source is None:
            continue
        if (QUEUE_TYPE, source.group("name")) not in model.resources:
            raise TerraformError(f"{what}: aws_sqs_queue.{source.group('name')} is not defined")
        raw_function = str(body.get("function_name", ""))
        key = _FUNCTION_KEY.search(raw_function)
        function = key.group("key") if key else literal(raw_function)
        if not function or "${" in function:
            raise TerraformError(
                f"{what}.function_name: {raw_function!r} names no function "
                '(aws_lambda_function.this["<key>"])'
            )
        concurrency: int | None = None
        for block in body.get("scaling_config", []):
            if "maximum_concurrency" in block:
                concurrency = _resolved_int(
                    evaluator, block, "maximum_concurrency", 0, f"{what}.scaling_config"
                )
        types = literal(body.get("function_response_types", []))
        specs[resource] = EventSourceMappingSpec(
            resource=resource,
            queue=source.group("name"),
            function=function,
            batch_size=_resolved_int(evaluator, body, "batch_size", 10, what),
            batching_window_s=_resolved_int(evaluator, body, "maximum_batching_window_in_seconds", 0, what),
            maximum_concurrency=concurrency,
            report_batch_item_failures="ReportBatchItemFailures" in types,
            enabled=_as_bool(evaluator.resolve(body["enabled"])) if "enabled" in body else True,
        )
    return specs
