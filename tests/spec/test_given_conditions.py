"""Filter conditions the caller gives as data (`filter: [{given, fields}]`) and `filter_match`:
checked at load, gated when they reach hidden fields, matched by name and never as
expressions, combined with all or any."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.calls.derive import active_conditions, match_any, matches
from gateway.spec.compiled import CollectSource, CompiledTool
from gateway.spec.jmes import compile_expression, search
from gateway.spec.loader import load_tree
from gateway.spec.templates import RenderContext
from tests.support import only_problem, write_tree

SERVICE = textwrap.dedent("""\
    version: 1
    name: demo
    title: Demo
    endpoint: /demo/mcp
    upstream:
      base_url: https://api.example.test/v1
    pii: {fields: [email], drop: [props]}
    """)
FIND = textwrap.dedent("""\
    tools:
      - name: find
        kind: read
        description: Find items by the conditions of a saved filter.
        input:
          conditions: {type: array, items: {type: object, additionalProperties: true}}
          props: {type: array, items: {type: object, additionalProperties: true}}
          match: {type: string}
        collect:
          request: {method: GET, path: /items}
          items: data
        filter_match: '{match}'
        filter:
          - given: '{conditions}'
            fields: {score: score, comment: comment}
          - given: {$expr: "args.props[].{field: join('', ['props.', name]), op: op, value: value}"}
            fields: {'props.*': 'from_items(props[].[name, value])'}
    """)
"""Line 12: filter_match, 14: the first given, 15: its fields, 17: the second one's fields."""
ROWS: list[dict[str, Any]] = [
    {"id": 1, "score": 3, "comment": "Price is high", "props": [{"name": "Region", "value": "EU"}]},
    {"id": 2, "score": 9, "comment": "Great", "props": [{"name": "region", "value": "US"}]},
    {"id": 3, "score": 9, "comment": "pricing"},
]


def find_tool(tmp_path: Path, text: str = FIND) -> CompiledTool:
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": text})
    return load_tree(tmp_path, {}).services[0].tools["find"]


def kept(tool: CompiledTool, **arguments: Any) -> list[int]:
    source = tool.source
    assert isinstance(source, CollectSource)
    ctx = RenderContext(arguments, {}, datetime(2026, 11, 23, tzinfo=UTC))
    conditions = active_conditions(source.conditions, ctx)
    return [r["id"] for r in ROWS if matches(r, conditions, match_any(source.match, ctx))]


@pytest.mark.parametrize(("arguments", "ids"), [
    ({}, [1, 2, 3]),
    ({"conditions": [{"field": "comment", "op": "contains", "value": "pric"},
                     {"field": "score", "op": "gte", "value": 9}]}, [3]),
    ({"conditions": [{"field": "comment", "op": "contains", "value": "price"},
                     {"field": "comment", "op": "contains", "value": "pricing"}],
      "match": "any"}, [1, 3]),
    ({"props": [{"name": "region", "op": "eq", "value": "eu"}]}, [1]),
    ({"conditions": [{"field": "score", "op": "gte", "value": 9}],
      "props": [{"name": "REGION", "op": "eq", "value": "EU"}], "match": "any"}, [1, 2, 3]),
    ({"conditions": [{"field": "score", "op": "gte", "value": 9}],
      "props": [{"name": "region", "op": "ne", "value": "US"}]}, [3]),
])
def test_given_conditions_combine_with_all_or_any(tmp_path: Path, arguments: dict[str, Any],
                                                  ids: list[int]) -> None:
    assert kept(find_tool(tmp_path), **arguments) == ids


@pytest.mark.parametrize(("arguments", "fragment"), [
    ({"conditions": [{"field": "id", "op": "eq", "value": 1}]},
     "Condition field 'id' is not one of: score, comment."),
    ({"conditions": [{"field": "score", "op": "like", "value": 1}]}, "op one of eq, ne"),
    ({"conditions": "score > 3"}, "must be a list of {field, op, value}"),
    ({"match": "most"}, "filter_match must be all or any"),
])
def test_conditions_the_spec_does_not_offer_are_refused(
        tmp_path: Path, arguments: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as refused:
        kept(find_tool(tmp_path), **arguments)
    assert fragment in str(refused.value)


def test_given_conditions_on_a_hidden_field_need_the_pii_scope_only_for_their_arguments(
        tmp_path: Path) -> None:
    pii = find_tool(tmp_path).pii

    assert pii is not None
    assert set(pii.arguments) == {("props",)}


@pytest.mark.parametrize(("text", "line", "fragment"), [
    (FIND.replace("'props.*'", "'pro*ps.*'"), 17, "find: field name 'pro*ps.*'"),
    (FIND.replace("'{conditions}'", "'{filters}'"), 14,
     "find: given names undeclared argument {filters}"),
    (FIND.replace("'{match}'", "'{mode}'"), 12,
     "find: filter_match names undeclared argument {mode}"),
    (FIND.replace("        fields: {score: score, comment: comment}\n", ""), 14,
     "tools.0.filter.0.fields: Field required"),
])
def test_a_bad_given_entry_is_reported_at_its_key(tmp_path: Path, text: str, line: int,
                                                  fragment: str) -> None:
    problem = only_problem(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": text})
    assert problem.line == line and problem.message.startswith(fragment), str(problem)


@pytest.mark.parametrize(("data", "expected"), [
    ([["plan", "Pro"], ["seats", 12]], {"plan": "Pro", "seats": 12}),
    ([["plan", "Pro"], ["plan", "Max"]], {"plan": "Max"}),
    ([["plan"], [1, "x"], "plan", ["seats", None]], {"seats": None}),
    (None, {}),
])
def test_from_items_makes_an_object_of_key_value_pairs(data: Any, expected: Any) -> None:
    assert search(compile_expression("from_items(@)"), data) == expected
