"""Compiled JMESPath gives exactly what jmespath's own interpreter gives, on every expression
the shipped specs use and on hand-picked edge cases."""

from __future__ import annotations

import json
from typing import Any

import jmespath
import jmespath.exceptions
import pytest

from gateway.errors import ResponseShapeError
from gateway.settings import SHIPPED_SPECS
from gateway.spec.derived_specs import ConditionSpec
from gateway.spec.fragments import expand
from gateway.spec.jmes import OPTIONS, compile_expression, search
from gateway.spec.loader import load_tree
from sandbox import FIXTURES_DIR

# Each test runs with the compiled row loops and with their pure-Python twins.
pytestmark = pytest.mark.usefixtures("row_loops")


def shipped_expressions() -> list[str]:
    registry = load_tree(SHIPPED_SPECS, {"MCP_GATEWAY_CONFORMANCE": "true"})
    found: set[str] = set()
    for service in registry.services:
        texts: set[str] = set()
        for tool in [*service.tools.values(), *(r.tool for r in service.resources.values())]:
            spec = tool.spec
            texts |= {e for e in (spec.response.select,
                                  spec.collect.items if spec.collect else None,
                                  spec.collect.pages.stop_when
                                  if spec.collect and spec.collect.pages else None,
                                  spec.collect.pages.total
                                  if spec.collect and spec.collect.pages else None,
                                  spec.write.preview_select if spec.write else None) if e}
            for entry in spec.filter:
                texts |= ({entry.field} if isinstance(entry, ConditionSpec)
                          else set(entry.fields.values()))
            texts |= {lookup.select for lookup in spec.lookups.values()}
            if spec.aggregate:
                texts |= set(spec.aggregate.groups.values())
        # As the interpreter gets them: with the service's fragments spelled out.
        found |= {expand(text, service.spec.fragments) for text in texts}
    return sorted(found)


def documents() -> list[Any]:
    feedback = json.loads((FIXTURES_DIR / "retently" / "feedback.json").read_text())["acc_demo"]
    customers = json.loads((FIXTURES_DIR / "retently" / "customers.json").read_text())["acc_demo"]
    responses = json.loads((FIXTURES_DIR / "refiner" / "responses.json").read_text())
    first_project = next(iter(responses.values()))
    return [
        {"message": "Success.", "code": 200,
         "data": {"responses": feedback[:30], "page": 1, "pages": 12, "total": 350}},
        {"data": {"responses": feedback[:1]}},
        {"data": {"subscribers": customers[:20], "page": 2, "pages": 6}},
        {"items": first_project[:20], "pagination": {"current_page": 1, "last_page": 3,
                                                     "next_page_cursor": "abc"}},
        {"campaigns": [{"id": "x", "metric": "NPS"}], "templates": [], "data": [{"a": 1}]},
        {"projects": [{"uuid": "u", "name": "P"}]},
        {"project_uuid": "u", "project_name": "P"},
        {"data": None}, {"data": []}, {"data": {}}, {}, [], None, "text", 0, False,
        {"data": {"responses": [None, 1, "x", {"score": 0}, {"score": None}]}},
        *feedback[:15], *customers[:5],
    ]


EXTRA = [
    "a.b.c", "a[0]", "a[-1]", "a[5]", "a[]", "a[].b", "a[*].b[0]", "a || b", "a && b", "!a",
    "a | [0]", "{x: a, y: b.c}", "[a, b]", "length(a)", "keys(@)", "a[?b > `1`]", "a[1:3]",
    "*.b", "sort_by(a, &b)", "a[][]", "`null` || `0`", "'' || `false` || a", "merge(a, {z: b})",
    "a[].{n: name, t: tags[0]}", "unique(a)", "explode(a, 'b')[].b",
    "from_items(a[].[name, b])", "from_items(a)",
]
EDGE = [{"a": [{"b": 1, "name": "n", "tags": ["t"]}, {"b": 2}, 3, None], "b": {"c": 0}},
        {"a": {"b": {"c": []}}}, {"a": []}, {"a": ""}, {"a": 0}, {"a": [[1, [2]], 3]},
        {"a": [{"b": [1, 2]}, {"b": []}, {"c": 1}]}, {"a": {"k": {"b": 1}}, "b": {"c": {}}}]


def interpreted(expression: str, document: Any) -> Any:
    try:
        return ("ok", jmespath.search(expression, document, options=OPTIONS))
    except jmespath.exceptions.JMESPathError as exc:
        return ("error", type(exc).__name__)


def compiled(expression: str, document: Any) -> Any:
    try:
        return ("ok", search(compile_expression(expression), document))
    except ResponseShapeError as exc:
        return ("error", type(exc.__cause__).__name__)


@pytest.mark.parametrize("expression", shipped_expressions())
def test_every_shipped_expression_agrees_with_the_interpreter(expression: str) -> None:
    for document in documents():
        assert compiled(expression, document) == interpreted(expression, document), document


@pytest.mark.parametrize("expression", EXTRA)
def test_edge_cases_agree_with_the_interpreter(expression: str) -> None:
    for document in [*EDGE, *documents()[:4], None, [], 0, ""]:
        assert compiled(expression, document) == interpreted(expression, document), document


def test_the_shipped_set_is_not_empty() -> None:
    assert len(shipped_expressions()) > 40
