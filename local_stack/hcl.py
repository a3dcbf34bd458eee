"""A small, strict reader of Terraform: python-hcl2 parsing plus an evaluator for the subset of HCL
expressions the module uses (references, templates, operators, conditionals, for expressions and the
functions listed in FUNCTIONS). What only AWS knows (ARNs, ids) evaluates to a symbolic ``Ref`` whose
text is ``${address}``, so IAM resources can be compared as strings; an evaluator can be given local
values for some of those addresses (``known``). Anything outside the subset raises: an expression this
reader cannot follow is an error, never a guess.

The local stack (``terraform.py``) and the module's tests (tests/iac) read the module with this code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

META_KEYS = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}


class HclError(Exception):
    """An expression or reference the module should not contain (or this reader does not support)."""


def unquote(value: Any) -> Any:
    """python-hcl2 8 keeps the quotes of string literals: ``'"x"'`` -> ``'x'``."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def strip_meta(value: Any) -> Any:
    if isinstance(value, dict):
        return {unquote(k): strip_meta(v) for k, v in value.items() if k not in META_KEYS}
    if isinstance(value, list):
        return [strip_meta(v) for v in value]
    return value


def parse_file(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            return strip_meta(hcl2.load(handle))
    except Exception as exc:  # python-hcl2 raises lark's errors, which name no file
        raise HclError(f"{path}: cannot parse: {exc}") from exc


@dataclass
class Module:
    """Every top-level block of the ``*.tf`` files of one directory (or of several, later ones replacing
    blocks of the same address: how a test-only route table replaces ``local.functions``), by address."""

    directory: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # "type.name" -> body
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # "type.name" -> body
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # address (var.x, local.y, aws_z.w) -> file
    _layer: dict[str, int] = field(default_factory=dict, repr=False)  # address -> which directory

    @classmethod
    def load(cls, directory: Path, *overrides: Path) -> Module:
        module = cls(directory)
        for layer, folder in enumerate((directory, *overrides)):
            for path in sorted(Path(folder).glob("*.tf")):
                parsed = parse_file(path)
                name = path.name if layer == 0 else str(path)
                module.files[name] = parsed
                module._add(name, parsed, layer)
        return module

    def _add(self, filename: str, parsed: dict[str, Any], layer: int = 0) -> None:
        """Add one file's blocks: twice in one directory is an error, a later directory replaces."""

        def put(table: dict[str, Any], prefix: str, name: str, body: Any) -> None:
            address = prefix + name
            if self._layer.get(address) == layer:
                raise HclError(f"{address} is declared twice ({self.origin[address]} and {filename})")
            table[name] = body
            self.origin[address] = filename
            self._layer[address] = layer

        for kind, table, prefix in (("resource", self.resources, ""), ("data", self.data, "data.")):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        put(table, prefix, f"{rtype}.{name}", body)
        for kind, table, prefix in (
            ("variable", self.variables, "var."),
            ("output", self.outputs, "output."),
            ("module", self.modules, "module."),
            ("locals", self.locals, "local."),
        ):
            for block in parsed.get(kind, []):
                for name, body in block.items():
                    put(table, prefix, name, body)

    def defaults(self) -> dict[str, Any]:
        values = {}
        for name, body in self.variables.items():
            if "default" in body:
                values[name] = Evaluator(self, {}).value(body["default"])
        return values


# --------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Ref:
    """An attribute only known after apply, e.g. ``aws_dynamodb_table.connections.arn``."""

    address: str

    def attr(self, name: str) -> Ref:
        return Ref(f"{self.address}.{name}")

    def index(self, key: Any) -> Ref:
        return Ref(f"{self.address}[{json.dumps(key)}]")

    def __str__(self) -> str:
        return "${" + self.address + "}"


def to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None:
        raise HclError("null used in a string template")
    if isinstance(value, (str, int, float, Ref)):
        return str(value)
    raise HclError(f"cannot interpolate {type(value).__name__} into a string")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _merge(*maps: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in maps:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise HclError("merge() takes maps")
        merged.update(item)
    return merged


def _lookup(mapping: Any, key: Any, *default: Any) -> Any:
    if key in mapping:
        return mapping[key]
    if default:
        return default[0]
    raise HclError(f"lookup(): no key {key!r} and no default")


def _flatten(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _setproduct(*lists: Any) -> list[list[Any]]:
    result: list[list[Any]] = [[]]
    for values in lists:
        result = [[*prefix, v] for prefix in result for v in values]
    return result


def _can(thunk: Callable[[], Any]) -> bool:
    try:
        thunk()
    except (HclError, re.error, KeyError, TypeError, ValueError):
        return False
    return True


def _regex(pattern: str, text: str) -> Any:
    match = re.search(pattern, text)
    if match is None:
        raise HclError("regex(): no match")
    return match.group(0)


def _numbers(name: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
    if not values or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise HclError(f"{name}() takes one or more numbers, got {list(values)!r}")
    return values


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "alltrue": lambda items: all(items),
    "anytrue": lambda items: any(items),
    "concat": lambda *lists: [v for items in lists for v in items],
    "contains": lambda items, value: value in items,
    "distinct": lambda items: list(dict.fromkeys(items)),
    "flatten": _flatten,
    "floor": lambda n: float(int(n // 1)),
    "join": lambda sep, items: sep.join(to_text(v) for v in items),
    "jsonencode": lambda value: json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":")),
    "keys": lambda mapping: sorted(mapping),
    "length": len,
    "lookup": _lookup,
    "lower": lambda s: s.lower(),
    "max": lambda *numbers: max(_numbers("max", numbers)),
    "merge": _merge,
    "min": lambda *numbers: min(_numbers("min", numbers)),
    "regex": _regex,
    "replace": lambda s, old, new: s.replace(old, new),
    "setproduct": _setproduct,
    "sha1": lambda s: hashlib.sha1(s.encode(), usedforsecurity=False).hexdigest(),
    "sort": lambda items: sorted(items),
    "startswith": lambda s, prefix: s.startswith(prefix),
    "tostring": to_text,
    "toset": lambda items: sorted(dict.fromkeys(items)),
    "upper": lambda s: s.upper(),
    "values": lambda mapping: [mapping[k] for k in sorted(mapping)],
}


# --------------------------------------------------------------------------------------------- lexer


TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
      |(?P<num>\d+(?:\.\d+)?)
      |(?P<op>=>|==|!=|>=|<=|&&|\|\||\.\.\.|[-+*/%<>!?:.,()\[\]{}=])
      |(?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # num, op, name, str, end
    value: Any


def _read_template(text: str, start: int) -> tuple[list[Any], int]:
    """Read a quoted template starting after its opening quote: parts are str or expression source."""
    parts: list[Any] = []
    buf: list[str] = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}
            buf.append(escapes.get(text[i + 1], "\\" + text[i + 1]))
            i += 2
            continue
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            if buf:
                parts.append("".join(buf))
                buf = []
            end = _matching_brace(text, i + 1)
            parts.append(("expr", text[i + 2 : end]))
            i = end + 1
            continue
        if text.startswith("%{", i):
            raise HclError("template directives (%{...}) are not supported")
        if ch == '"':
            if buf or not parts:
                parts.append("".join(buf))
            return parts, i + 1
        buf.append(ch)
        i += 1
    raise HclError(f"unterminated string in {text!r}")


def _matching_brace(text: str, open_index: int) -> int:
    depth = 0
    i = open_index
    while i < len(text):
        ch = text[i]
        if ch == '"':
            _, i = _read_template(text, i + 1)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise HclError(f"unbalanced braces in {text!r}")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            parts, i = _read_template(text, i + 1)
            tokens.append(Token("str", parts))
            continue
        match = TOKEN_RE.match(text, i)
        if match is None:
            raise HclError(f"cannot read {text[i : i + 20]!r} in {text!r}")
        i = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind == "ws":
            continue
        value: Any = match.group(kind)
        if kind == "num":
            value = float(value) if "." in value else int(value)
        tokens.append(Token(kind, value))
    tokens.append(Token("end", None))
    return tokens


# --------------------------------------------------------------------------------------------- parser
# Nodes are tuples: ("lit", v), ("tmpl", parts), ("ref", name), ("attr", node, name), ("index", node, expr),
# ("splat", node, name), ("call", name, args), ("unop", op, node), ("binop", op, l, r),
# ("cond", c, a, b), ("list", items), ("object", [(k, v)]), ("for_list", ...), ("for_map", ...).

BINARY_PRECEDENCE = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 4,
    ">": 4,
    "<=": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self, kind: str | None = None, value: Any = None) -> Token:
        token = self.peek()
        if (kind and token.kind != kind) or (value is not None and token.value != value):
            raise HclError(f"expected {value or kind}, got {token.value!r} in {self.text!r}")
        self.pos += 1
        return token

    def accept(self, value: str) -> bool:
        token = self.peek()
        if token.kind in ("op", "name") and token.value == value:
            self.pos += 1
            return True
        return False

    def parse(self) -> tuple[Any, ...]:
        node = self.expression()
        self.take("end")
        return node

    def expression(self) -> tuple[Any, ...]:
        condition = self.binary(1)
        if self.accept("?"):
            then = self.expression()
            self.take("op", ":")
            otherwise = self.expression()
            return ("cond", condition, then, otherwise)
        return condition

    def binary(self, min_precedence: int) -> tuple[Any, ...]:
        left = self.unary()
        while True:
            token = self.peek()
            precedence = BINARY_PRECEDENCE.get(token.value) if token.kind == "op" else None
            if precedence is None or precedence < min_precedence:
                return left
            self.pos += 1
            right = self.binary(precedence + 1)
            left = ("binop", token.value, left, right)

    def unary(self) -> tuple[Any, ...]:
        if self.accept("!"):
            return ("unop", "!", self.unary())
        if self.accept("-"):
            return ("unop", "-", self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: tuple[Any, ...]) -> tuple[Any, ...]:
        while True:
            if self.peek().kind == "op" and self.peek().value == "." and self.peek(1).kind == "name":
                self.pos += 1
                node = ("attr", node, self.take("name").value)
            elif self.peek().kind == "op" and self.peek().value == "[":
                self.pos += 1
                if self.accept("*"):
                    self.take("op", "]")
                    self.take("op", ".")
                    node = ("splat", node, self.take("name").value)
                else:
                    key = self.expression()
                    self.take("op", "]")
                    node = ("index", node, key)
            else:
                return node

    def primary(self) -> tuple[Any, ...]:
        token = self.take()
        if token.kind == "num":
            return ("lit", token.value)
        if token.kind == "str":
            return ("tmpl", [p if isinstance(p, str) else Parser(p[1]).parse() for p in token.value])
        if token.kind == "name":
            if token.value in ("true", "false"):
                return ("lit", token.value == "true")
            if token.value == "null":
                return ("lit", None)
            if self.peek().kind == "op" and self.peek().value == "(":
                self.pos += 1
                args: list[tuple[Any, ...]] = []
                while not self.accept(")"):
                    args.append(self.expression())
                    if self.accept("..."):
                        raise HclError("argument expansion (...) is not supported")
                    self.accept(",")
                return ("call", token.value, args)
            return ("ref", token.value)
        if token.value == "(":
            node = self.expression()
            self.take("op", ")")
            return node
        if token.value == "[":
            if self.peek().kind == "name" and self.peek().value == "for":
                return self.for_expression("]")
            items: list[tuple[Any, ...]] = []
            while not self.accept("]"):
                items.append(self.expression())
                self.accept(",")
            return ("list", items)
        if token.value == "{":
            if self.peek().kind == "name" and self.peek().value == "for":
                return self.for_expression("}")
            pairs: list[tuple[Any, Any]] = []
            while not self.accept("}"):
                key_token = self.peek()
                if key_token.kind == "name" and self.peek(1).value in ("=", ":"):
                    self.pos += 1
                    key: Any = ("lit", key_token.value)
                else:
                    key = self.expression()
                if not (self.accept("=") or self.accept(":")):
                    raise HclError(f"expected = in object in {self.text!r}")
                pairs.append((key, self.expression()))
                self.accept(",")
            return ("object", pairs)
        raise HclError(f"unexpected {token.value!r} in {self.text!r}")

    def for_expression(self, closing: str) -> tuple[Any, ...]:
        self.take("name", "for")
        names = [self.take("name").value]
        if self.accept(","):
            names.append(self.take("name").value)
        self.take("name", "in")
        collection = self.expression()
        self.take("op", ":")
        first = self.expression()
        second = None
        if closing == "}":
            self.take("op", "=>")
            second = self.expression()
        condition = self.expression() if self.accept("if") else None
        self.take("op", closing)
        kind = "for_map" if closing == "}" else "for_list"
        return (kind, names, collection, first, second, condition)


_PARSED: dict[str, tuple[Any, ...]] = {}


def parse_expression(source: str) -> tuple[Any, ...]:
    if source not in _PARSED:
        _PARSED[source] = Parser(source).parse()
    return _PARSED[source]


def expression_source(raw: str) -> str:
    """The expression inside a python-hcl2 value: ``${x}`` -> ``x``, ``"a${b}"`` -> ``"a${b}"``."""
    if raw.startswith("${") and raw.endswith("}") and _matching_brace(raw, 1) == len(raw) - 1:
        return raw[2:-1]
    if raw.startswith('"') and raw.endswith('"'):
        return raw
    raise HclError(f"not an HCL value: {raw!r}")


def references(raw: Any) -> Iterator[tuple[str, ...]]:
    """Every traversal (``("var", "name")``, ``("aws_x", "y", "arn")``, ...) in a parsed value."""
    if isinstance(raw, dict):
        for value in raw.values():
            yield from references(value)
    elif isinstance(raw, list):
        for value in raw:
            yield from references(value)
    elif isinstance(raw, str):
        yield from _node_references(parse_expression(expression_source(raw)), frozenset())


def _traversal(node: tuple[Any, ...]) -> list[str] | None:
    if node[0] == "ref":
        return [node[1]]
    if node[0] in ("attr", "splat"):
        base = _traversal(node[1])
        return None if base is None else [*base, node[2]]
    if node[0] == "index":
        return _traversal(node[1])
    return None


def _node_references(node: Any, bound: frozenset[str]) -> Iterator[tuple[str, ...]]:
    if not isinstance(node, tuple):
        return
    kind = node[0]
    if kind in ("ref", "attr", "splat"):
        path = _traversal(node)
        if path is not None and path[0] not in bound:
            yield tuple(path)
        if kind != "ref" and path is None:
            yield from _node_references(node[1], bound)
        return
    if kind == "index":
        path = _traversal(node)
        if path is not None and path[0] not in bound:
            yield tuple(path)
        elif path is None:
            yield from _node_references(node[1], bound)
        yield from _node_references(node[2], bound)
        return
    if kind in ("for_list", "for_map"):
        _, names, collection, first, second, condition = node
        yield from _node_references(collection, bound)
        inner = bound | set(names)
        for part in (first, second, condition):
            yield from _node_references(part, inner)
        return
    for child in node[1:]:
        if isinstance(child, tuple):
            yield from _node_references(child, bound)
        elif isinstance(child, list):
            for item in child:
                if isinstance(item, tuple) and len(item) == 2 and not isinstance(item[0], str):
                    yield from _node_references(item[0], bound)
                    yield from _node_references(item[1], bound)
                else:
                    yield from _node_references(item, bound)


# --------------------------------------------------------------------------------------------- evaluator


class Evaluator:
    """Evaluates values of one module, with given variable values and a scope (each, count, iterators).

    ``known`` gives values to addresses only known after apply (``aws_dynamodb_table.x.name``) or to
    locals (``local.callback_url``): the local stack evaluates the module with its local values."""

    def __init__(
        self,
        module: Module,
        variables: Mapping[str, Any],
        scope: Mapping[str, Any] | None = None,
        *,
        lenient: bool = False,
        known: Mapping[str, Any] | None = None,
    ) -> None:
        self.module = module
        self.variables = variables
        self.scope = dict(scope or {})
        self.lenient = lenient  # undeclared var/local -> Ref (for reading foreign HCL such as the seed's)
        self.known = dict(known or {})
        self._locals: dict[str, Any] = {}

    def with_scope(self, **scope: Any) -> Evaluator:
        return self._child({**self.scope, **scope})

    def _child(self, scope: Mapping[str, Any] | None = None) -> Evaluator:
        child = Evaluator(self.module, self.variables, scope, lenient=self.lenient, known=self.known)
        child._locals = self._locals
        return child

    def value(self, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: self.value(v) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.value(v) for v in raw]
        if isinstance(raw, str):
            return self.node(parse_expression(expression_source(raw)), self.scope)
        return raw

    def local(self, name: str) -> Any:
        if f"local.{name}" in self.known:
            return self.known[f"local.{name}"]
        if name not in self._locals:
            if name not in self.module.locals:
                if self.lenient:
                    return Ref(f"local.{name}")
                raise HclError(f"local.{name} is not declared")
            self._locals[name] = self._child().value(self.module.locals[name])
        return self._locals[name]

    def resolve(self, name: str, scope: Mapping[str, Any]) -> Any:
        if name in scope:
            return scope[name]
        if name == "var":
            return _Namespace("var", self._variable)
        if name == "local":
            return _Namespace("local", self.local)
        if name == "data":
            return _Namespace(
                "data", lambda dtype: _Namespace(f"data.{dtype}", lambda n: Ref(f"data.{dtype}.{n}"))
            )
        if name in ("each", "count", "path", "module", "terraform", "self"):
            raise HclError(f"{name} used outside of its context")
        return _Namespace(name, lambda n: self._resource(f"{name}.{n}"))

    def _resource(self, address: str) -> Any:
        """A single resource is a Ref; one with for_each is a map of Refs, one with count a list."""
        body = self.module.resources.get(address)
        if body is None or not ({"for_each", "count"} & set(body)):
            return Ref(address)
        keys = instances(self.module, self._child(), address)
        if "count" in body:
            return [Ref(f"{address}[{i}]") for i in keys]
        return {k: Ref(f"{address}[{json.dumps(k)}]") for k in keys}

    def _variable(self, name: str) -> Any:
        if name not in self.module.variables:
            if self.lenient:
                return Ref(f"var.{name}")
            raise HclError(f"var.{name} is not declared")
        if name in self.variables:
            return self.variables[name]
        raise HclError(f"var.{name} has no value")

    def node(self, node: tuple[Any, ...], scope: Mapping[str, Any]) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "tmpl":
            parts = node[1]
            if len(parts) == 1 and not isinstance(parts[0], str):
                return self.node(parts[0], scope)
            return "".join(p if isinstance(p, str) else to_text(self.node(p, scope)) for p in parts)
        if kind == "ref":
            return self.resolve(node[1], scope)
        if kind == "attr":
            value = _get_attr(self.node(node[1], scope), node[2])
            return self.known.get(value.address, value) if isinstance(value, Ref) else value
        if kind == "splat":
            base = self.node(node[1], scope)
            if isinstance(base, Ref):
                return base.attr("*").attr(node[2])
            return [_get_attr(item, node[2]) for item in base]
        if kind == "index":
            return _get_index(self.node(node[1], scope), self.node(node[2], scope))
        if kind == "call":
            name, args = node[1], node[2]
            if name == "can":
                return _can(lambda: self.node(args[0], scope))
            if name not in FUNCTIONS:
                raise HclError(f"function {name}() is not supported by this reader")
            values = [self.node(a, scope) for a in args]
            if any(isinstance(v, Ref) for v in values) and name not in (
                "jsonencode",
                "join",
                "sha1",
                "concat",
            ):
                if name == "replace":
                    return Ref(f"replace({values[0].address if isinstance(values[0], Ref) else values[0]})")
                raise HclError(f"{name}() of a value only known after apply")
            return FUNCTIONS[name](*values)
        if kind == "unop":
            value = self.node(node[2], scope)
            return (not value) if node[1] == "!" else -value
        if kind == "binop":
            return self._binop(node[1], node[2], node[3], scope)
        if kind == "cond":
            return self.node(node[2], scope) if self.node(node[1], scope) else self.node(node[3], scope)
        if kind == "list":
            return [self.node(item, scope) for item in node[1]]
        if kind == "object":
            return {to_text(self.node(k, scope)): self.node(v, scope) for k, v in node[1]}
        if kind in ("for_list", "for_map"):
            return self._for(node, scope)
        raise HclError(f"unknown node {kind}")

    def _binop(self, op: str, left: Any, right: Any, scope: Mapping[str, Any]) -> Any:
        a = self.node(left, scope)
        if op == "&&":
            return bool(a) and bool(self.node(right, scope))
        if op == "||":
            return bool(a) or bool(self.node(right, scope))
        b = self.node(right, scope)
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if isinstance(a, Ref) or isinstance(b, Ref):
            raise HclError(f"arithmetic on a value only known after apply ({op})")
        operations: dict[str, Callable[[Any, Any], Any]] = {
            "<": lambda x, y: x < y,
            ">": lambda x, y: x > y,
            "<=": lambda x, y: x <= y,
            ">=": lambda x, y: x >= y,
            "+": lambda x, y: x + y,
            "-": lambda x, y: x - y,
            "*": lambda x, y: x * y,
            "/": lambda x, y: x / y,
            "%": lambda x, y: x % y,
        }
        return operations[op](a, b)

    def _for(self, node: tuple[Any, ...], scope: Mapping[str, Any]) -> Any:
        kind, names, collection_node, first, second, condition = node
        collection = self.node(collection_node, scope)
        if isinstance(collection, dict):
            pairs = [(k, collection[k]) for k in sorted(collection)]
        elif isinstance(collection, list):
            pairs = list(enumerate(collection))
        else:
            raise HclError("for expression over a value only known after apply")
        result_list: list[Any] = []
        result_map: dict[str, Any] = {}
        for key, item in pairs:
            inner = dict(scope)
            if len(names) == 2:
                inner[names[0]], inner[names[1]] = key, item
            else:
                inner[names[0]] = item
            if condition is not None and not self.node(condition, inner):
                continue
            if kind == "for_list":
                result_list.append(self.node(first, inner))
            else:
                result_map[to_text(self.node(first, inner))] = self.node(second, inner)
        return result_list if kind == "for_list" else result_map


class _Namespace:
    def __init__(self, name: str, getter: Callable[[str], Any]) -> None:
        self.name = name
        self.getter = getter


def _get_attr(value: Any, name: str) -> Any:
    if isinstance(value, _Namespace):
        return value.getter(name)
    if isinstance(value, Ref):
        return value.attr(name)
    if isinstance(value, dict):
        if name not in value:
            raise HclError(f"no attribute {name!r}")
        return value[name]
    raise HclError(f"cannot read .{name} of {type(value).__name__}")


def _get_index(value: Any, key: Any) -> Any:
    if isinstance(value, Ref):
        return value.index(key)
    if isinstance(value, dict):
        if key not in value:
            raise HclError(f"no key {key!r}")
        return value[key]
    if isinstance(value, list):
        return value[int(key)]
    raise HclError(f"cannot index {type(value).__name__}")


# --------------------------------------------------------------------------------------------- helpers


def expand_dynamic(evaluator: Evaluator, body: dict[str, Any], block: str) -> list[dict[str, Any]]:
    """The ``block`` blocks of a body, literal ones and those a ``dynamic "<block>"`` generates."""
    blocks = [evaluator.value(b) for b in body.get(block, [])]
    for dynamic in body.get("dynamic", []):
        for name, spec in dynamic.items():
            if name != block:
                continue
            iterator = unquote(spec.get("iterator", name))
            collection = evaluator.value(spec["for_each"])
            items = collection.items() if isinstance(collection, dict) else enumerate(collection)
            for key, item in items:
                inner = evaluator.with_scope(**{iterator: {"key": key, "value": item}})
                for content in spec["content"]:
                    blocks.append(inner.value(content))
    return blocks


def for_each_instances(evaluator: Evaluator, body: dict[str, Any]) -> dict[Any, Evaluator]:
    """One evaluator per instance of a resource/data block: keyed by each.key (or count.index)."""
    if "for_each" in body:
        collection = evaluator.value(body["for_each"])
        if isinstance(collection, list):
            collection = {v: v for v in collection}
        return {k: evaluator.with_scope(each={"key": k, "value": v}) for k, v in collection.items()}
    if "count" in body:
        return {
            i: evaluator.with_scope(count={"index": i}) for i in range(int(evaluator.value(body["count"])))
        }
    return {None: evaluator}


def instances(module: Module, evaluator: Evaluator, address: str) -> dict[Any, Evaluator]:
    """Like for_each_instances, following ``for_each = <other resource>`` to that resource's keys."""
    body = module.resources.get(address) or module.data.get(address.removeprefix("data."))
    if body is None:
        raise HclError(f"{address} is not declared")
    raw = body.get("for_each")
    if isinstance(raw, str):
        source = expression_source(raw)
        target = source if source in module.resources else None
        if target is not None:
            keys = instances(module, evaluator, target)
            return {
                k: evaluator.with_scope(each={"key": k, "value": Ref(f"{target}[{json.dumps(k)}]")})
                for k in keys
            }
    return for_each_instances(evaluator, body)
