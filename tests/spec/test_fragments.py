"""Reusable spec parts: a service's `fragments:` used as `$name` in its tools' expressions, and a
request's `query: {from_input: ...}`; a name that resolves to nothing is a load error with its
line, so `check` proves every reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import SpecError
from gateway.spec.compiled import RequestSource
from gateway.spec.fragments import expand
from gateway.spec.jmes import search
from gateway.spec.loader import load_tree
from tests.support import service_tree

SERVICE = """\
    name: desk
    title: Desk
    endpoint: /desk/mcp
    upstream: {base_url: 'http://127.0.0.1:9'}
    fragments:
      item: 'data.responses[0] || data'
      brief: '{id: id, tags: tags}'
      item_brief: '$item | $brief'
    """


def tools(select: str, query: str = "{}") -> str:
    return f"""\
        tools:
          - name: read_item
            kind: read
            description: Read.
            input:
              item_id: {{type: string}}
              page: {{type: integer}}
              limit: {{type: integer}}
            request: {{path: /item, query: {query}}}
            response: {{select: "{select}"}}
        """


def loaded(tmp_path: Path, select: str, query: str = "{}") -> RequestSource:
    registry = load_tree(service_tree(tmp_path, "desk", SERVICE, tools(select, query)), {})
    service = registry.get("desk")
    assert service is not None
    tool = service.tools["read_item"]
    assert isinstance(tool.source, RequestSource)
    expression = tool.shape.select
    assert expression is not None
    answer = {"data": {"responses": [{"id": 7, "tags": ["vip"], "email": "x@y.z"}]}}
    assert search(expression, answer) == {"id": 7, "tags": ["vip"]}
    return tool.source


def test_a_fragment_is_one_term_wherever_it_stands_and_may_use_another(tmp_path: Path) -> None:
    loaded(tmp_path, "$item_brief")
    loaded(tmp_path / "b", "$item.{id: id, tags: tags}")


def test_a_dollar_inside_a_string_literal_is_left_alone() -> None:
    named = {"item": "data"}
    assert expand("contains(name, '$item') && $item.x", named) == \
        "contains(name, '$item') && (data).x"
    assert expand("`\"$item\"` == $item", named) == '`"$item"` == (data)'


@pytest.mark.parametrize(("fragments", "select", "said"), [
    ("{}", "$nothing.id", "unknown fragment $nothing"),
    ("{a: '$b', b: '$a'}", "$a", "cycle"),
])
def test_a_fragment_that_resolves_to_nothing_is_a_load_error_at_its_line(
        tmp_path: Path, fragments: str, select: str, said: str) -> None:
    service = SERVICE.split("    fragments:")[0] + f"    fragments: {fragments}\n"
    with pytest.raises(SpecError) as refused:
        load_tree(service_tree(tmp_path, "desk", service, tools(select)), {})
    problem = str(refused.value.problems[0])
    assert said in problem and "tools.yaml:" in problem


@pytest.mark.parametrize(("query", "expected"), [
    ("{from_input: [page, limit]}", {"page": "{page}", "limit": "{limit}"}),
    ("{from_input: {item_id: itemId, page: p}, sort: '-date'}",
     {"itemId": "{item_id}", "p": "{page}", "sort": "-date"}),
])
def test_from_input_sends_arguments_as_query_parameters(
        tmp_path: Path, query: str, expected: dict[str, str]) -> None:
    source = loaded(tmp_path, "$item_brief", query)
    rendered = {k: str(getattr(v, "text", v)) for k, v in source.request.query.items()}
    assert rendered.keys() == expected.keys()
    assert all(expected[k].strip("{}") in rendered[k] for k in expected)


@pytest.mark.parametrize(("query", "said"), [
    ("{from_input: [page], page: '{limit}'}", "given both explicitly and by from_input"),
    ("{from_input: 3}", "from_input takes a list"),
    ("{from_input: [nope]}", "nope"),
])
def test_a_from_input_that_cannot_work_is_a_load_error(
        tmp_path: Path, query: str, said: str) -> None:
    with pytest.raises(SpecError) as refused:
        load_tree(service_tree(tmp_path, "desk", SERVICE, tools("$item_brief", query)), {})
    assert said in str(refused.value)


def test_a_projection_fragment_can_follow_a_projection() -> None:
    named = {"row": "{id: id, name: name}", "item": "data.items[0] || data"}
    assert expand("items[].$row", named) == "items[].{id: id, name: name}"
    assert expand("$item | $row", named) == "(data.items[0] || data) | {id: id, name: name}"
    assert expand("$pair", {"pair": "{a: a} || {b: b}"}) == "({a: a} || {b: b})"
