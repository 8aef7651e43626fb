"""JMESPath as the spec format uses it: the standard functions plus a few the specs need. Pure.

Extra functions: `lower(s)`, `upper(s)`, `month(date)` ("YYYY-MM"), `day(date)` ("YYYY-MM-DD"),
`union(a, b)`, `difference(a, b)` (order kept, duplicates dropped), `unique(a)`,
`from_items(pairs)` (an object from [key, value] pairs, e.g. custom properties by name), and
`explode(items, 'field')`: one copy of each item per element of its list `field`, with that
field holding the one element (so per-topic rows keep their feedback's other fields).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import jmespath
import jmespath.exceptions
from jmespath import functions
from jmespath.visitor import TreeInterpreter

from gateway import native
from gateway.errors import ResponseShapeError
from gateway.spec.fragments import expand


def _ordered_unique(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


class GatewayFunctions(functions.Functions):
    @functions.signature({"types": ["string", "null"]})
    def _func_lower(self, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @functions.signature({"types": ["string", "null"]})
    def _func_upper(self, value: str | None) -> str | None:
        return value.upper() if value is not None else None

    @functions.signature({"types": ["string", "null"]})
    def _func_month(self, value: str | None) -> str | None:
        return value[:7] if value is not None and len(value) >= 7 and value[4] == "-" else None

    @functions.signature({"types": ["string", "null"]})
    def _func_day(self, value: str | None) -> str | None:
        return value[:10] if value is not None and len(value) >= 10 and value[4] == "-" else None

    @functions.signature({"types": ["array", "null"]}, {"types": ["array", "null"]})
    def _func_union(self, first: list[Any] | None, second: list[Any] | None) -> list[Any]:
        return _ordered_unique([*(first or []), *(second or [])])

    @functions.signature({"types": ["array", "null"]}, {"types": ["array", "null"]})
    def _func_difference(self, first: list[Any] | None, second: list[Any] | None) -> list[Any]:
        removed = second or []
        return _ordered_unique([v for v in (first or []) if v not in removed])

    @functions.signature({"types": ["array", "null"]})
    def _func_unique(self, values: list[Any] | None) -> list[Any]:
        return _ordered_unique(values or [])

    @functions.signature({"types": ["array", "null"]})
    def _func_from_items(self, pairs: list[Any] | None) -> dict[str, Any]:
        return {pair[0]: pair[1] for pair in pairs or []
                if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)}

    @functions.signature({"types": ["array", "null"]}, {"types": ["string"]})
    def _func_explode(self, items: list[Any] | None, field: str) -> list[Any]:
        rows: list[Any] = []
        for item in items or []:
            values = item.get(field) if isinstance(item, dict) else None
            if isinstance(values, list):
                rows.extend({**item, field: value} for value in values)
        return rows


_FUNCTION_SET: Final = GatewayFunctions()
OPTIONS: Final = jmespath.Options(dict_cls=dict, custom_functions=_FUNCTION_SET)

_FUNCTIONS: Final = _FUNCTION_SET.FUNCTION_TABLE
_INTERPRETER: Final = TreeInterpreter(OPTIONS)
Evaluate = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression: the parse tree turned into nested Python closures.

    jmespath walks its tree with a visitor on every call; the common node types (fields,
    sub-expressions, indexes, projections, flatten, multi-select, or/and/not, pipes, literals,
    functions) become direct closures with the same semantics, and every other node is handed
    to jmespath's own interpreter, so results never differ.
    """

    text: str
    parsed: Any
    evaluate: Evaluate


def compile_expression(text: str) -> Expression:
    """Compile an expression and check its function calls, which jmespath checks only when run.

    Raises:
        jmespath.exceptions.JMESPathError: a syntax error.
        ValueError: an unknown function, or a call with the wrong number of arguments.
    """
    text = expand(text)  # the service's shared fragments ($name), while a tree is loaded
    parsed = jmespath.compile(text).parsed
    _check_functions(parsed)
    return Expression(text, parsed, _compile(parsed))


def evaluator(node: Any) -> Evaluate:
    """The compiled function of one node of a parse tree (one entry of a multiselect)."""
    return _compile(node)


def _false(value: Any) -> bool:
    """JMESPath truthiness: empty strings, lists and objects, null and false are false."""
    return value is None or value is False or value == "" or value == [] or value == {}


def _compile(node: Any) -> Evaluate:
    kind = node["type"]
    children = node.get("children", [])
    builder = _BUILDERS.get(kind)
    if builder is not None and not (kind == "function_expression"
                                    and any(c["type"] == "expref" for c in children)):
        return builder(node, children)
    return lambda value: _INTERPRETER.visit(node, value)


def _field(node: Any, _children: list[Any]) -> Evaluate:
    name = node["value"]
    return lambda value: value.get(name) if isinstance(value, dict) else None


def _literal(node: Any, _children: list[Any]) -> Evaluate:
    constant = node["value"]
    return lambda _value: constant


def _chain(_node: Any, children: list[Any]) -> Evaluate:
    steps = [_compile(child) for child in children]

    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value
    return chain


def _index(node: Any, _children: list[Any]) -> Evaluate:
    position = node["value"]

    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[position]
        except IndexError:
            return None
    return index


def _projection(_node: Any, children: list[Any]) -> Evaluate:
    left, right = _compile(children[0]), _compile(children[1])

    def project(value: Any) -> Any:
        base = left(value)
        if not isinstance(base, list):
            return None
        return [r for r in map(right, base) if r is not None]
    return project


def _flatten(_node: Any, children: list[Any]) -> Evaluate:
    inner = _compile(children[0])

    def flatten(value: Any) -> Any:
        base = inner(value)
        if not isinstance(base, list):
            return None
        merged: list[Any] = []
        for element in base:
            if isinstance(element, list):
                merged.extend(element)
            else:
                merged.append(element)
        return merged
    return flatten


def _select_dict(_node: Any, children: list[Any]) -> Evaluate:
    values = [child["children"][0] for child in children]
    if all(value["type"] == "field" for value in values):
        # The common row shape `{id: id, name: name, ...}`: one dict lookup a key, no calls.
        fields = [(child["value"], value["value"]) for child, value in zip(children, values,
                                                                            strict=True)]
        compiled = native.rows()
        if compiled is not None:  # the same loop in C (gateway/native/_rows.c)
            return functools.partial(compiled.pick, tuple(fields))

        def pick(value: Any) -> Any:
            if value is None:
                return None
            if not isinstance(value, dict):
                return dict.fromkeys(key for key, _ in fields)
            get = value.get
            return {key: get(name) for key, name in fields}
        return pick
    pairs = [(child["value"], _compile(value)) for child, value in zip(children, values,
                                                                       strict=True)]
    return lambda value: (None if value is None
                          else {key: evaluate(value) for key, evaluate in pairs})


def _select_list(_node: Any, children: list[Any]) -> Evaluate:
    items = [_compile(child) for child in children]
    return lambda value: None if value is None else [evaluate(value) for evaluate in items]


def _or(_node: Any, children: list[Any]) -> Evaluate:
    left, right = _compile(children[0]), _compile(children[1])

    def either(value: Any) -> Any:
        first = left(value)
        return right(value) if _false(first) else first
    return either


def _and(_node: Any, children: list[Any]) -> Evaluate:
    left, right = _compile(children[0]), _compile(children[1])

    def both(value: Any) -> Any:
        first = left(value)
        return first if _false(first) else right(value)
    return both


def _not(_node: Any, children: list[Any]) -> Evaluate:
    inner = _compile(children[0])
    return lambda value: _false(inner(value))


def _pipe(_node: Any, children: list[Any]) -> Evaluate:
    left, right = _compile(children[0]), _compile(children[1])
    return lambda value: right(left(value))


def _function(node: Any, children: list[Any]) -> Evaluate:
    name = node["value"]
    arguments = [_compile(child) for child in children]
    call = _FUNCTION_SET.call_function
    return lambda value: call(name, [argument(value) for argument in arguments])


_BUILDERS: Final[dict[str, Callable[[Any, list[Any]], Evaluate]]] = {
    "field": _field, "literal": _literal, "current": lambda _n, _c: lambda value: value,
    "subexpression": _chain, "index_expression": _chain, "index": _index,
    "projection": _projection, "flatten": _flatten, "multi_select_dict": _select_dict,
    "multi_select_list": _select_list, "or_expression": _or, "and_expression": _and,
    "not_expression": _not, "pipe": _pipe, "function_expression": _function,
}


def _check_functions(node: Any) -> None:
    if not isinstance(node, dict):
        return
    if node.get("type") == "function_expression":
        name = node.get("value")
        entry = _FUNCTIONS.get(name)
        if entry is None:
            raise ValueError(f"unknown JMESPath function {name}()")
        signature = entry["signature"]
        given = len(node.get("children", []))
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if given < len(signature) - (1 if variadic else 0) or (
                not variadic and given != len(signature)):
            raise ValueError(f"{name}() takes {len(signature)} argument(s), {given} given")
    for child in node.get("children", []):
        _check_functions(child)


def search(expression: Expression, data: Any) -> Any:
    """Raises:
        ResponseShapeError: the data has a shape the expression's functions cannot take.
    """
    try:
        return expression.evaluate(data)
    except jmespath.exceptions.JMESPathError as exc:
        raise ResponseShapeError(
            "The upstream answer did not have the shape this tool expects "
            f"({' '.join(str(exc).split())[:200]}).") from exc
