"""`mcp-gateway test`: a tree's test cases run offline, each failing case one `file:line` line
with what differed, a summary, and the exit code (0 all passed, 1 one failed, 2 no tree)."""

from __future__ import annotations

import logging
import os
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.server.cli import main
from tests.support import write_tree

SUMMARY = re.compile(r"^(?P<counts>.+) in \d+\.\ds$")

SERVICE = textwrap.dedent("""\
    name: shop
    title: Shop
    endpoint: /shop/mcp
    upstream: {base_url: 'https://api.shop.test/v1'}
    auth:
      resolver: introspection
      introspection_url: https://auth.shop.test/introspect
    scopes: [{name: "items:read"}, {name: "pii:read"}]
    pii: {scope: "pii:read", fields: [email], scrub_text: false}
    """)
GET_ITEM = """\
      - name: get_item
        kind: read
        description: Get one item.
        scopes: ["items:read"]
        input:
          id: {type: string, pattern: '^[0-9]+$', required: true}
        request: {method: GET, path: '/items/{id}'}
        tests:
          - name: reads one item by id
            arguments: {id: '7'}
            expect_request: {method: GET, path: /items/7}
            upstream: {body: {id: '7', price: 3}}
            expect: {structured: {id: '7', price: 3}}
          - name: refuses an id that is not a number
            arguments: {id: x}
            protocol_error: -32602
    """
GET_BUYER = """\
      - name: get_buyer
        kind: read
        description: Who bought an item.
        scopes: ["items:read"]
        input:
          id: {type: string, required: true}
        request: {method: GET, path: '/items/{id}/buyer'}
        tests:
          - name: hides the buyer from a caller without pii:read
            arguments: {id: '7'}
            as_scopes: ["items:read"]
            upstream:
              body: {id: '7', email: pat@example.com, contact_email: pat@example.com}
            expect_absent: [pat@example.com]
    """
LIST_ORDERS = """\
      - name: list_orders
        kind: read
        description: List orders.
        request: {method: GET, path: /orders}
    """


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings and spec interpolation read the environment; `test` configures logging: keep
    the one out, and undo the other."""
    for variable in [v for v in os.environ if v.startswith("GATEWAY_")]:
        monkeypatch.delenv(variable)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def tree(root: Path, *tools: str, service: str = SERVICE) -> Path:
    return write_tree(root, {"shop/service.yaml": service, "shop/tools.yaml": tools_file(*tools)})


def tools_file(*tools: str) -> str:
    return "version: 1\ntools:\n" + "".join(
        textwrap.indent(textwrap.dedent(tool), "  ") for tool in tools)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, list[
        str], str]:
    """The exit code, the lines printed, and the counts of the summary (its last line)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    lines = capsys.readouterr().out.splitlines()
    summary = SUMMARY.match(lines[-1]) if lines else None
    return exited.value.code, lines[:-1], summary["counts"] if summary else ""


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(
        path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def test_a_tree_whose_cases_pass_exits_0_with_the_summary_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, failures, counts = run(["test", str(tree(tmp_path, GET_ITEM))], capsys)

    assert code == 0
    assert failures == []
    assert counts == "2 case(s) of 1 tool(s): 0 failed"


def test_a_failing_case_is_one_line_with_its_file_line_and_what_differed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = GET_ITEM.replace("path: /items/7}", "path: /items/8}").replace(
        "structured: {id: '7', price: 3}", "structured: {id: '7', price: 4}")
    root = tree(tmp_path, broken)
    tools = root / "shop" / "tools.yaml"

    code, failures, counts = run(["test", str(root)], capsys)

    assert code == 1
    assert failures == [
        f"{tools}:{line_of(tools, '- name: reads one item by id')}: get_item: reads one item "
        "by id: expect_request.path: expected /v1/items/8, sent /v1/items/7; "
        "structured.price: expected 4, got 3"]
    assert counts == "2 case(s) of 1 tool(s): 1 failed"


def test_a_case_expecting_a_refusal_that_gets_a_result_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, GET_ITEM.replace("arguments: {id: x}", "arguments: {id: '9'}"))

    code, failures, _ = run(["test", str(root)], capsys)

    assert code == 1
    assert len(failures) == 1
    assert failures[0].endswith(": get_item: refuses an id that is not a number: "
                                "protocol_error: expected JSON-RPC error -32602, got a result: "
                                '{"result":null}')


def test_a_tree_that_does_not_load_exits_2_with_its_problems_as_check_prints_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, GET_ITEM.replace("    kind: read", "    kind: read\n        x: 1"))

    with pytest.raises(SystemExit) as exited:
        main(["test", str(root)])

    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert out == ""
    tools = root / "shop" / "tools.yaml"
    assert err.splitlines() == [f"{tools}:5: tools.0.x: unknown key",
                                f"1 problem(s) in {root}"]


def test_a_case_giving_both_as_scopes_and_scopes_does_not_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    both = GET_BUYER.replace('as_scopes: ["items:read"]',
                             'as_scopes: ["items:read"]\n            scopes: ["items:read"]')

    code, _, _ = run(["test", str(tree(tmp_path, both))], capsys)

    assert code == 2


def test_expect_absent_names_the_string_a_caller_without_the_pii_scope_got_and_where(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, GET_BUYER)
    tools = root / "shop" / "tools.yaml"

    code, failures, counts = run(["test", str(root)], capsys)

    assert code == 1
    assert failures == [
        f"{tools}:{line_of(tools, '- name: hides the buyer')}: get_buyer: hides the buyer from "
        "a caller without pii:read: expect_absent: 'pat@example.com' appears in "
        "result.structuredContent.contact_email (and 1 more place(s))"]
    assert counts == "1 case(s) of 1 tool(s): 1 failed"


def test_expect_absent_passes_once_the_policy_covers_the_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = SERVICE.replace("fields: [email]", "fields: [email, contact_email]")

    code, failures, _ = run(["test", str(tree(tmp_path, GET_BUYER, service=service))], capsys)

    assert (code, failures) == (0, [])


def test_expect_absent_passes_for_the_caller_with_the_pii_scope_only_when_nothing_shows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same case as a caller who may read personal data: the email is there, as it should
    be, so a case claiming its absence fails: the scopes are really the caller's."""
    entitled = GET_BUYER.replace('as_scopes: ["items:read"]',
                                 'as_scopes: ["items:read", "pii:read"]')
    service = SERVICE.replace("fields: [email]", "fields: [email, contact_email]")

    code, failures, _ = run(["test", str(tree(tmp_path, entitled, service=service))], capsys)

    assert code == 1
    assert "expect_absent: 'pat@example.com' appears in result.structuredContent." in failures[0]


def test_as_scopes_on_a_service_without_introspection_fails_saying_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passthrough = SERVICE.replace("resolver: introspection", "resolver: passthrough").replace(
        "  introspection_url: https://auth.shop.test/introspect\n", "")

    code, failures, _ = run(["test", str(tree(tmp_path, GET_BUYER, service=passthrough))],
                            capsys)

    assert code == 1
    assert failures[0].endswith("as_scopes: the service does not introspect its tokens "
                                "(auth.resolver: passthrough), so a caller always holds its "
                                "default scopes")


def test_tools_without_cases_are_counted_as_untested(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, counts = run(["test", str(tree(tmp_path, GET_ITEM, LIST_ORDERS))], capsys)

    assert code == 0
    assert counts == "2 case(s) of 1 tool(s): 0 failed, 1 tool(s) untested"


def test_tool_runs_the_cases_of_that_tool_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, GET_ITEM, GET_BUYER, LIST_ORDERS)

    code, failures, counts = run(["test", str(root), "--tool", "get_item"], capsys)

    assert (code, failures) == (0, [])
    assert counts == "2 case(s) of 1 tool(s): 0 failed"


def test_service_runs_the_cases_of_that_service_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, GET_BUYER)
    write_tree(root, {"stock/service.yaml": SERVICE.replace("name: shop", "name: stock")
                      .replace("/shop/mcp", "/stock/mcp"),
                      "stock/tools.yaml": tools_file(GET_ITEM)})

    code, failures, counts = run(["test", str(root), "--service", "stock"], capsys)

    assert (code, failures) == (0, [])
    assert counts == "2 case(s) of 1 tool(s): 0 failed"


@pytest.mark.parametrize(("option", "name"), [("--service", "nope"), ("--tool", "nope")])
def test_a_filter_naming_nothing_in_the_tree_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, name: str) -> None:
    root = tree(tmp_path, GET_ITEM)

    with pytest.raises(SystemExit) as exited:
        main(["test", str(root), option, name])

    kind = option.removeprefix("--")
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"mcp-gateway test: no {kind} 'nope' in {root}\n"


def test_a_service_whose_token_pattern_no_test_token_matches_fails_saying_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strict = SERVICE.replace("resolver: introspection",
                             "resolver: introspection\n  token_pattern: '^shop_[0-9]{8}$'")

    code, failures, _ = run(["test", str(tree(tmp_path, GET_ITEM, service=strict))], capsys)

    assert code == 1
    assert len(failures) == 2
    assert all(": none of the test tokens matches auth.token_pattern '^shop_[0-9]{8}$': "
               in line for line in failures)


def test_a_token_pattern_with_a_literal_start_gets_a_token_with_that_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefixed = SERVICE.replace(
        "resolver: introspection",
        "resolver: introspection\n  token_pattern: '^shop_[A-Za-z0-9]{16,}$'")

    code, failures, _ = run(["test", str(tree(tmp_path, GET_ITEM, service=prefixed))], capsys)

    assert (code, failures) == (0, [])
