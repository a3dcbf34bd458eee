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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

__all__ = [
    "Evaluator",
    "FunctionSpec",
    "IndexSpec",
    "TableSpec",
    "TerraformError",
    "TerraformModel",
    "literal",
    "load_model",
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
    )


_CALL = re.compile(r"^(?P<fn>[a-z_]+)\((?P<args>.*)\)$", re.S)
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
        if expr.startswith("local."):
            name = expr[6:]
            if name in self.locals and not isinstance(self.locals[name], dict):
                return self._eval_raw(self.locals[name])
            self.unresolved.append(expr)
            return ""
        call = _CALL.match(expr)
        if call:
            fn, args = call.group("fn"), _split_args(call.group("args"))
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
