"""The spec loader: what loads, and every problem it reports with file and line.

Each test builds a small spec tree in tmp_path and loads it through `load_tree`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from gateway.calls.shaping import select
from gateway.errors import SpecError, SpecProblem
from gateway.settings import SHIPPED_SPECS
from gateway.spec.compiled import ResultSource
from gateway.spec.loader import load_tree
from gateway.spec.schema import DEFAULT_MAX_ITEMS, DEFAULT_MAX_STRING
from tests.support import write_tree

SERVICE = textwrap.dedent("""\
    version: 1
    name: demo
    title: Demo
    endpoint: /demo/mcp
    upstream:
      base_url: https://api.example.test/v1
    scopes:
      - name: "items:read"
    """)
"""A valid service.yaml; its last line is 8, so a key appended to it is on line 9."""

GET_ITEM = textwrap.dedent("""\
    tools:
      - name: get_item
        kind: read
        description: Get one item by id.
        scopes: ["items:read"]
        input:
          id: {type: string, required: true}
          tags: {type: array, items: {type: string}}
        request:
          method: GET
          path: /items/{id}
          query:
            tag: '{tags}'
        response:
          select: data
    """)
"""A valid tool file. Line 2: name, 5: scopes, 7: id, 11: path, 12: query, 15: select."""


def problems_of(root: Path, env: Mapping[str, str] | None = None) -> list[SpecProblem]:
    """The problems load_tree reports for a tree that must not load."""
    with pytest.raises(SpecError) as caught:
        load_tree(root, env or {})
    return caught.value.problems


def where(problems: list[SpecProblem], root: Path) -> list[tuple[str, int]]:
    """(file relative to root, line) of each problem, in the order reported."""
    return [(Path(p.file).relative_to(root).as_posix(), p.line) for p in problems]


def only(problems: list[SpecProblem], root: Path) -> tuple[str, int, str]:
    """The single problem of a tree as (relative file, line, message)."""
    assert len(problems) == 1, [str(p) for p in problems]
    (file, line), = where(problems, root)
    return file, line, problems[0].message


def test_a_minimal_tree_loads_into_compiled_services_and_tools(tmp_path: Path) -> None:
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": GET_ITEM})

    registry = load_tree(tmp_path, {})

    assert [s.name for s in registry.services] == ["demo"]
    service = registry.by_endpoint["/demo/mcp"]
    assert list(service.tools) == ["get_item"]
    assert service.spec.upstream.base_url == "https://api.example.test/v1"
    tool = service.tools["get_item"]
    assert tool.request is not None
    assert [p.argument for p in tool.request.path if p.argument is not None] == ["id"]
    assert tool.scopes == frozenset({"items:read"})
    assert tool.input_schema["required"] == ["id"]
    assert tool.input_schema["additionalProperties"] is False
    assert tool.input_schema["properties"]["id"]["maxLength"] == DEFAULT_MAX_STRING
    assert tool.input_schema["properties"]["tags"]["maxItems"] == DEFAULT_MAX_ITEMS
    assert tool.wire["annotations"] == {"readOnlyHint": True, "destructiveHint": False,
                                        "idempotentHint": True, "openWorldHint": True}
    assert select(tool.shape.select, {"data": {"id": "a"}}) == {"id": "a"}


def test_a_service_folder_given_directly_loads_as_the_only_service(tmp_path: Path) -> None:
    write_tree(tmp_path, {"service.yaml": SERVICE, "items.yaml": GET_ITEM})

    registry = load_tree(tmp_path, {})

    assert [(s.name, list(s.tools)) for s in registry.services] == [("demo", ["get_item"])]
    assert registry.services[0].folder == str(tmp_path)


def test_tool_files_may_end_in_yml_and_other_files_are_ignored(tmp_path: Path) -> None:
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yml": GET_ITEM,
                     "demo/README.md": "tools: {not: [valid"})

    registry = load_tree(tmp_path, {})

    assert list(registry.services[0].tools) == ["get_item"]


def test_an_empty_tool_file_adds_no_tools(tmp_path: Path) -> None:
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/empty.yaml": ""})

    registry = load_tree(tmp_path, {})

    assert registry.services[0].tools == {}


@pytest.mark.parametrize(("file", "text", "line"), [
    ("service.yaml", "name: demo\ntitle: [Demo\nendpoint: /demo/mcp\n", 3),
    ("items.yaml", "tools:\n  - name: get_item\n    kind: read\n   description: x\n", 4),
    ("items.yaml", "tools:\n  - name: get_item\n\tkind: read\n", 3),
])
def test_a_yaml_syntax_error_is_reported_with_its_file_and_line(
        tmp_path: Path, file: str, text: str, line: int) -> None:
    files = {"demo/service.yaml": SERVICE, f"demo/{file}": text}

    found = only(problems_of(write_tree(tmp_path, files)), tmp_path)

    assert found[:2] == (f"demo/{file}", line)
    assert found[2].startswith("YAML syntax error: ")


@pytest.mark.parametrize(("file", "text", "line", "key_path"), [
    ("service.yaml", SERVICE + "colour: blue\n", 9, "colour"),
    ("service.yaml", SERVICE.replace("  base_url:", "  colour: blue\n  base_url:"), 6,
     "upstream.colour"),
    ("items.yaml", GET_ITEM.replace("    scopes:", "    colour: blue\n    scopes:"), 5,
     "tools.0.colour"),
    ("items.yaml", GET_ITEM.replace("{type: string, required: true}",
                                    "\n        type: string\n        required: true\n"
                                    "        colour: blue"), 10,
     "tools.0.input.id.colour"),
    ("items.yaml", GET_ITEM.replace("items: {type: string}", "items: {type: string, colour: 1}"),
     8, "tools.0.input.tags.items.colour"),
    ("items.yaml", GET_ITEM.replace("      method: GET", "      method: GET\n      colour: 1"),
     11, "tools.0.request.colour"),
])
def test_an_unknown_key_is_reported_at_its_own_line(
        tmp_path: Path, file: str, text: str, line: int, key_path: str) -> None:
    files = {"demo/service.yaml": SERVICE, "demo/items.yaml": GET_ITEM, f"demo/{file}": text}

    found = only(problems_of(write_tree(tmp_path, files)), tmp_path)

    assert found == (f"demo/{file}", line, f"{key_path}: unknown key")


def test_a_snake_case_spelling_of_a_camel_case_key_is_unknown(tmp_path: Path) -> None:
    tool = GET_ITEM.replace("{type: string, required: true}",
                            "{type: string, required: true, max_length: 5}")
    files = {"demo/service.yaml": SERVICE, "demo/items.yaml": tool}

    found = only(problems_of(write_tree(tmp_path, files)), tmp_path)

    assert found == ("demo/items.yaml", 7, "tools.0.input.id.max_length: unknown key")


@pytest.mark.parametrize(("file", "text", "line", "key"), [
    ("service.yaml", SERVICE + "title: Again\n", 9, "title"),
    ("items.yaml", GET_ITEM.replace("    kind: read\n", "    kind: read\n    kind: write\n"), 4,
     "kind"),
    ("items.yaml", GET_ITEM.replace("{type: string, required: true}",
                                    "{type: string, required: true, type: integer}"), 7, "type"),
])
def test_a_key_given_twice_is_reported_at_its_second_occurrence(
        tmp_path: Path, file: str, text: str, line: int, key: str) -> None:
    files = {"demo/service.yaml": SERVICE, "demo/items.yaml": GET_ITEM, f"demo/{file}": text}

    found = only(problems_of(write_tree(tmp_path, files)), tmp_path)

    assert found == (f"demo/{file}", line, f"key {key!r} is given twice")


def test_a_tool_name_used_in_two_files_of_one_service_is_reported_in_the_second(
        tmp_path: Path) -> None:
    files = {"demo/service.yaml": SERVICE, "demo/a.yaml": GET_ITEM, "demo/b.yaml": GET_ITEM}

    found = only(problems_of(write_tree(tmp_path, files)), tmp_path)

    assert found == ("demo/b.yaml", 2, "tool 'get_item' is defined twice in this service")


def test_the_same_tool_name_in_two_services_is_allowed(tmp_path: Path) -> None:
    other = SERVICE.replace("name: demo", "name: other").replace("/demo/mcp", "/other/mcp")
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": GET_ITEM,
                     "other/service.yaml": other, "other/items.yaml": GET_ITEM})

    registry = load_tree(tmp_path, {})

    assert [(s.name, list(s.tools)) for s in registry.services] == [
        ("demo", ["get_item"]), ("other", ["get_item"])]


@pytest.mark.parametrize(("text", "line", "fragment"), [
    (GET_ITEM.replace("/items/{id}", "/items/{item_id}"), 11,
     "get_item: path names undeclared argument {item_id}"),
    (GET_ITEM.replace("{type: string, required: true}", "{type: string}"), 11,
     "get_item: path argument {id} must be required or have a default"),
    (GET_ITEM.replace("/items/{id}", "/items/{id}.json"), 11,
     "get_item: path segment '{id}.json' must be a whole {argument} or literal"),
    (GET_ITEM.replace("/items/{id}", "/items/{now}"), 11,
     "get_item: path segment '{now}' may only name an argument or principal field"),
    (GET_ITEM.replace("select: data", "select: 'data[?'"), 15,
     "get_item: invalid JMESPath expression"),
    (GET_ITEM.replace("required: true}", "required: true, pattern: '[a-'}"), 7,
     "get_item: invalid pattern: unterminated character set"),
    (GET_ITEM.replace('["items:read"]', '["items:write"]'), 5,
     "get_item: scope 'items:write' is not declared in service.yaml scopes"),
    (GET_ITEM.replace("tag: '{tags}'", "tag: '{tag_list}'"), 12,
     "get_item: query names undeclared argument {tag_list}"),
    (GET_ITEM.replace("select: data", "output_schema: {type: array}"), 15,
     "get_item: output_schema must have type: object"),
    (GET_ITEM.replace("/items/{id}", "/items/{id|title}"), 11,
     "get_item: unknown filter |title (use |lower, |upper or |list)"),
    (GET_ITEM.replace("tag: '{tags}'", "tag: '{principal.email}'"), 12,
     "get_item: {principal.email}: the principal has only account, subject"),
])
def test_a_cross_field_problem_of_a_tool_is_reported_at_the_key_concerned(
        tmp_path: Path, text: str, line: int, fragment: str) -> None:
    files = {"demo/service.yaml": SERVICE, "demo/items.yaml": text}

    file, found_line, message = only(problems_of(write_tree(tmp_path, files)), tmp_path)

    assert (file, found_line) == ("demo/items.yaml", line)
    assert message.startswith(fragment), message


def test_a_path_argument_with_a_default_need_not_be_required(tmp_path: Path) -> None:
    tool = GET_ITEM.replace("{type: string, required: true}", "{type: string, default: first}")
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": tool})

    registry = load_tree(tmp_path, {})

    assert registry.services[0].tools["get_item"].defaults == {"id": "first"}


def test_tool_scopes_are_free_when_the_service_declares_no_scope_vocabulary(
        tmp_path: Path) -> None:
    service = SERVICE.split("scopes:")[0]
    tool = GET_ITEM.replace('["items:read"]', '["anything:goes"]')
    write_tree(tmp_path, {"demo/service.yaml": service, "demo/items.yaml": tool})

    registry = load_tree(tmp_path, {})

    assert registry.services[0].tools["get_item"].scopes == frozenset({"anything:goes"})


RESULT_TOOL = textwrap.dedent("""\
    tools:
      - name: ping
        kind: meta
        description: Liveness probe.
        result: {pong: true}
    """)


@pytest.mark.parametrize("text", [
    GET_ITEM + "    result: {pong: true}\n",
    GET_ITEM.split("    request:")[0],
])
def test_a_tool_needs_exactly_one_of_request_and_result(tmp_path: Path, text: str) -> None:
    files = {"demo/service.yaml": SERVICE, "demo/items.yaml": text}

    found = only(problems_of(write_tree(tmp_path, files)), tmp_path)

    assert found == ("demo/items.yaml", 2, "tools.0: Value error, a tool needs exactly one of "
                     "`request` (one upstream call), `collect` (paged reads) or `result` "
                     "(answered by the gateway)")


def test_a_tool_with_only_a_result_loads_without_a_request(tmp_path: Path) -> None:
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/server.yaml": RESULT_TOOL})

    tool = load_tree(tmp_path, {}).services[0].tools["ping"]

    assert tool.request is None
    assert isinstance(tool.source, ResultSource)
    assert tool.source.template == {"pong": True}
    assert tool.wire["annotations"]["openWorldHint"] is False


def test_two_services_with_the_same_endpoint_are_refused(tmp_path: Path) -> None:
    def service(name: str) -> str:
        return (f"endpoint: /shared/mcp\nname: {name}\ntitle: T\n"
                "upstream: {base_url: 'https://api.example.test'}\n")

    write_tree(tmp_path, {"a/service.yaml": service("alpha"), "b/service.yaml": service("beta")})

    file, line, message = only(problems_of(tmp_path), tmp_path)

    assert (file, line) == ("b/service.yaml", 1)
    assert message == f"endpoint '/shared/mcp' is already used by {tmp_path / 'a'}"


def test_two_services_with_the_same_name_are_refused(tmp_path: Path) -> None:
    other = SERVICE.replace("/demo/mcp", "/other/mcp")
    write_tree(tmp_path, {"a/service.yaml": SERVICE, "b/service.yaml": other})

    file, _, message = only(problems_of(tmp_path), tmp_path)

    assert file == "b/service.yaml"
    assert message == f"name 'demo' is already used by {tmp_path / 'a'}"


def with_base_url(value: str) -> str:
    return SERVICE.replace("https://api.example.test/v1", value)


@pytest.mark.parametrize(("base_url", "env", "expected"), [
    ("${API_URL}", {"API_URL": "https://env.example.test"}, "https://env.example.test"),
    ("${API_URL}/v2", {"API_URL": "https://env.example.test"}, "https://env.example.test/v2"),
    ("${API_URL:-https://default.example.test}", {}, "https://default.example.test"),
    ("${API_URL:-https://default.example.test}", {"API_URL": "https://env.example.test"},
     "https://env.example.test"),
    ("${API_URL:-https://default.example.test}", {"API_URL": ""}, "https://default.example.test"),
    ("https://api.example.test/", {}, "https://api.example.test"),
])
def test_service_yaml_interpolates_environment_variables(
        tmp_path: Path, base_url: str, env: dict[str, str], expected: str) -> None:
    write_tree(tmp_path, {"demo/service.yaml": with_base_url(base_url)})

    registry = load_tree(tmp_path, env)

    assert registry.services[0].spec.upstream.base_url == expected


def test_interpolation_reaches_nested_lists_of_service_yaml(tmp_path: Path) -> None:
    service = SERVICE + "auth:\n  authorization_servers: ['${AS_URL:-https://as.example.test}']\n"
    write_tree(tmp_path, {"demo/service.yaml": service})

    registry = load_tree(tmp_path, {"AS_URL": "https://login.example.test"})

    assert registry.services[0].spec.auth.authorization_servers == ["https://login.example.test"]


def test_an_unset_variable_without_default_leaves_an_empty_value_that_is_reported(
        tmp_path: Path) -> None:
    write_tree(tmp_path, {"demo/service.yaml": with_base_url("${API_URL}")})

    file, line, message = only(problems_of(tmp_path, {}), tmp_path)

    assert (file, line) == ("demo/service.yaml", 6)
    assert message.startswith("upstream.base_url: ")
    assert "http(s) URL" in message


def test_tool_files_are_not_interpolated(tmp_path: Path) -> None:
    tool = GET_ITEM.replace("Get one item by id.", "'Reads ${API_URL} items.'")
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": tool})

    registry = load_tree(tmp_path, {"API_URL": "https://env.example.test"})

    assert registry.services[0].tools["get_item"].spec.description == "Reads ${API_URL} items."


@pytest.mark.parametrize(("file", "text", "line", "template"), [
    ("items.yaml", GET_ITEM.replace("tag: '{tags}'", "tag: '{tags'"), 12, "{tags"),
    ("items.yaml", GET_ITEM.replace("tag: '{tags}'", "tag: 'x}'"), 12, "x}"),
    ("items.yaml",
     GET_ITEM.replace("      query:", "      headers: {X-Id: 'id {id'}\n      query:"), 12,
     "id {id"),
    ("server.yaml", RESULT_TOOL.replace("{pong: true}", "{at: '{now'}"), 5, "{now"),
])
def test_a_template_with_unbalanced_braces_is_reported(
        tmp_path: Path, file: str, text: str, line: int, template: str) -> None:
    files = {"demo/service.yaml": SERVICE, f"demo/{file}": text}

    found = only(problems_of(write_tree(tmp_path, files)), tmp_path)

    assert found[:2] == (f"demo/{file}", line)
    assert found[2].endswith(f"unbalanced brace in template {template!r}")


def test_doubled_braces_are_literal_text_not_a_template(tmp_path: Path) -> None:
    tool = GET_ITEM.replace("tag: '{tags}'", "tag: '{{literal}}'")
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": tool})

    compiled = load_tree(tmp_path, {}).services[0].tools["get_item"]

    assert compiled.request is not None
    assert compiled.request.query["tag"].parts == ("{literal}",)


def test_every_problem_of_a_broken_tree_is_reported_at_once(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "alpha/service.yaml": SERVICE.replace("name: demo", "name: alpha").replace(
            "/demo/mcp", "/alpha/mcp"),
        "alpha/a_syntax.yaml": "tools:\n  - name: [oops\n",
        "alpha/b_unknown.yaml": GET_ITEM.replace("    scopes:", "    colour: blue\n    scopes:"),
        "alpha/c_checks.yaml": GET_ITEM.replace('["items:read"]', '["items:write"]')
                                       .replace("select: data", "select: 'data[?'"),
        "alpha/d_twice.yaml": RESULT_TOOL.replace("kind: meta", "kind: meta\n    kind: read"),
        "beta/service.yaml": SERVICE.replace("name: demo", "name: beta").replace(
            "/demo/mcp", "/beta/mcp") + "colour: blue\n",
        "beta/items.yaml": GET_ITEM.replace("kind: read", "kind: delete"),
    })

    found = problems_of(tmp_path)

    assert sorted(where(found, tmp_path)) == [
        ("alpha/a_syntax.yaml", 3),
        ("alpha/b_unknown.yaml", 5),
        ("alpha/c_checks.yaml", 5),
        ("alpha/c_checks.yaml", 15),
        ("alpha/d_twice.yaml", 4),
        ("beta/items.yaml", 3),
        ("beta/service.yaml", 9),
    ]
    messages = "\n".join(str(p) for p in found)
    assert "YAML syntax error" in messages
    assert "tools.0.colour: unknown key" in messages
    assert "scope 'items:write' is not declared" in messages
    assert "invalid JMESPath expression" in messages
    assert "key 'kind' is given twice" in messages
    assert "tools.0.kind: Input should be" in messages
    assert "colour: unknown key" in messages


def test_problems_of_several_tool_files_are_all_reported_with_a_valid_service(
        tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "demo/service.yaml": SERVICE,
        "demo/a.yaml": GET_ITEM.replace("kind: read", "kind: delete"),
        "demo/b.yaml": GET_ITEM.replace("/items/{id}", "/items/{nope}"),
        "demo/c.yaml": RESULT_TOOL.replace("kind: meta", "kind: meta\n    colour: blue"),
    })

    found = problems_of(tmp_path)

    assert where(found, tmp_path) == [("demo/a.yaml", 3), ("demo/c.yaml", 4),
                                      ("demo/b.yaml", 11)]
    assert found[0].message.startswith("tools.0.kind: Input should be 'read', 'write' or 'meta'")
    assert found[1].message == "tools.0.colour: unknown key"
    assert found[2].message == "get_item: path names undeclared argument {nope}"


def test_every_missing_required_key_of_service_yaml_is_reported(tmp_path: Path) -> None:
    write_tree(tmp_path, {"demo/service.yaml": "name: demo\n"})

    found = problems_of(tmp_path)

    assert [p.message for p in found] == [
        "title: Field required", "endpoint: Field required", "upstream: Field required"]
    assert {p.line for p in found} == {1}


@pytest.mark.parametrize(("text", "line", "message"), [
    (SERVICE + "auth: {token_pattern: '[x'}\n", 9,
     "auth.token_pattern: invalid regular expression: unterminated character set at position 0"),
    (SERVICE + "auth:\n  refuse_patterns:\n    - {pattern: '(x', message: a REST key}\n", 11,
     "auth.refuse_patterns: invalid regular expression: missing ), unterminated subpattern"),
    (SERVICE.replace("version: 1", "version: 2"), 1, "version: Input should be 1"),
    (SERVICE.replace("/demo/mcp", "demo/mcp"), 4, "endpoint: String should match pattern"),
    (SERVICE.replace("https://api.example.test/v1", "https://api.example.test/?a=1"), 6,
     "upstream.base_url: Value error, base_url must be an http(s) URL without query or fragment"),
    (SERVICE.replace("  base_url: https://api.example.test/v1",
                     "  base_url: https://api.example.test/v1\n  credential: {format: Bearer}"), 7,
     "upstream.credential.format: Value error, format must contain {token} exactly once"),
])
def test_a_bad_value_in_service_yaml_is_reported_at_its_key(
        tmp_path: Path, text: str, line: int, message: str) -> None:
    write_tree(tmp_path, {"demo/service.yaml": text, "demo/items.yaml": GET_ITEM})

    found = only(problems_of(tmp_path), tmp_path)

    assert found[:2] == ("demo/service.yaml", line)
    assert found[2].startswith(message), found[2]


def test_an_anonymous_tool_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    service = SERVICE + "auth:\n  anonymous_tools: [pong]\n"
    write_tree(tmp_path, {"demo/service.yaml": service, "demo/items.yaml": GET_ITEM})

    found = only(problems_of(tmp_path), tmp_path)

    assert found == ("demo/service.yaml", 10, "auth.anonymous_tools names unknown tool 'pong'")


def test_an_empty_folder_has_no_service(tmp_path: Path) -> None:
    found = only(problems_of(tmp_path), tmp_path)

    assert found == (".", 1, "no service folder (with service.yaml)")


def test_a_folder_of_tool_files_without_service_yaml_is_not_a_service(tmp_path: Path) -> None:
    write_tree(tmp_path, {"demo/items.yaml": GET_ITEM})

    found = only(problems_of(tmp_path), tmp_path)

    assert found == (".", 1, "no service folder (with service.yaml)")


def test_a_root_that_is_not_a_folder_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "missing"

    (problem,) = problems_of(missing)

    assert (problem.file, problem.line, problem.message) == (str(missing), 1, "not a folder")


def test_the_shipped_tree_loads_without_problems() -> None:
    registry = load_tree(SHIPPED_SPECS, {})

    assert sorted(s.name for s in registry.services) == ["refiner", "retently"]
    assert sorted(registry.by_endpoint) == ["/refiner/mcp", "/retently/mcp",
                                            "/retently/readonly/mcp"]
    retently = registry.by_endpoint["/retently/mcp"]
    assert retently.spec.upstream.base_url == "https://app.retently.com"
    assert retently.tools["ping"].anonymous is True
    assert all(s.tools for s in registry.services)


@pytest.mark.parametrize(("select", "fragment"), [
    ("nosuch(data)", "unknown JMESPath function nosuch()"),
    ("length(data, data)", "length() takes 1 argument(s), 2 given"),
])
def test_a_select_calling_an_unknown_function_or_with_wrong_arity_is_reported(
        tmp_path: Path, select: str, fragment: str) -> None:
    tool = GET_ITEM.replace("select: data", f"select: '{select}'")
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": tool})

    file, _, message = only(problems_of(tmp_path), tmp_path)

    assert file == "demo/items.yaml"
    assert fragment in message
