"""JMESPath as the spec format uses it: the standard functions plus a few the specs need. Pure.

Extra functions: `lower(s)`, `upper(s)`, `month(date)` ("YYYY-MM"), `day(date)` ("YYYY-MM-DD"),
`union(a, b)`, `difference(a, b)` (order kept, duplicates dropped), `unique(a)`, and
`explode(items, 'field')`: one copy of each item per element of its list `field`, with that
field holding the one element (so per-topic rows keep their feedback's other fields).
"""

from __future__ import annotations

from typing import Any, Final

import jmespath
import jmespath.exceptions
import jmespath.parser
from jmespath import functions

from gateway.errors import ResponseShapeError


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

    @functions.signature({"types": ["array", "null"]}, {"types": ["string"]})
    def _func_explode(self, items: list[Any] | None, field: str) -> list[Any]:
        rows: list[Any] = []
        for item in items or []:
            values = item.get(field) if isinstance(item, dict) else None
            if isinstance(values, list):
                rows.extend({**item, field: value} for value in values)
        return rows


OPTIONS: Final = jmespath.Options(dict_cls=dict, custom_functions=GatewayFunctions())

Expression = jmespath.parser.ParsedResult


_FUNCTIONS: Final = GatewayFunctions().FUNCTION_TABLE


def compile_expression(text: str) -> Expression:
    """Compile an expression and check its function calls, which jmespath checks only when run.

    Raises:
        jmespath.exceptions.JMESPathError: a syntax error.
        ValueError: an unknown function, or a call with the wrong number of arguments.
    """
    expression = jmespath.compile(text)
    _check_functions(expression.parsed)
    return expression


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
        return expression.search(data, options=OPTIONS)
    except jmespath.exceptions.JMESPathError as exc:
        raise ResponseShapeError(
            "The upstream answer did not have the shape this tool expects "
            f"({' '.join(str(exc).split())[:200]}).") from exc
