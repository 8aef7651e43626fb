"""The command line: `check`, `tools`, `schema`, `--version`, and `serve` refusing a broken tree.

No test starts a server: `serve` is only driven down the path where the tree fails to load.
"""

from __future__ import annotations

import json
import logging
import os
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from gateway import __version__
from gateway.server.cli import DEMO_UPSTREAM_VARIABLES, main
from gateway.settings import SHIPPED_SPECS
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree
from tests.support import write_tree

PROBLEM_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+): (?P<message>.+)$")
SHIPPED_FILES = sorted(SHIPPED_SPECS.glob("*/*.yaml"))

SERVICE = textwrap.dedent("""\
    name: demo
    title: Demo
    endpoint: /demo/mcp
    upstream: {base_url: 'https://api.example.test'}
    scopes: [{name: "items:read"}]
    """)
TOOL = textwrap.dedent("""\
    tools:
      - name: get_item
        kind: read
        description: Get one item.
        scopes: ["items:read"]
        input:
          id: {type: string, required: true}
        request: {method: GET, path: '/items/{id}'}
    """)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Spec interpolation and Settings read the process environment; keep it out of the tests,
    and undo the logger levels `serve` sets."""
    for variable in DEMO_UPSTREAM_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable in [v for v in os.environ if v.startswith("GATEWAY_")]:
        monkeypatch.delenv(variable)
    levels = {name: logging.getLogger(name).level for name in ("", "httpx", "httpcore")}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def run(argv: list[str]) -> int | str | None:
    """Run the command line and return its exit code."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code


def shipped() -> Registry:
    return load_tree(SHIPPED_SPECS, {})


def broken_tree(root: Path) -> Path:
    """A tree with three problems: an unknown key, an undeclared scope and a bad path."""
    return write_tree(root, {
        "demo/service.yaml": SERVICE,
        "demo/items.yaml": TOOL.replace('["items:read"]', '["items:write"]')
                               .replace("{id}'}", "{item}'}"),
        "demo/more.yaml": TOOL.replace("    kind: read", "    kind: read\n    x: 1"),
    })


def test_check_on_the_shipped_tree_exits_0_with_a_summary(
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = shipped()
    tools = sum(len(s.tools) for s in registry.services)

    code = run(["check", str(SHIPPED_SPECS)])

    out, err = capsys.readouterr()
    assert code == 0
    assert out == f"ok: {len(registry.services)} service(s), {tools} tool(s) in {SHIPPED_SPECS}\n"
    assert err == ""


def test_check_without_a_folder_checks_the_shipped_tree(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["check"])

    assert code == 0
    assert capsys.readouterr().out.endswith(f" in {SHIPPED_SPECS}\n")


def test_check_on_a_broken_tree_prints_every_problem_as_file_line_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["check", str(broken_tree(tmp_path))])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    *problems, summary = err.splitlines()
    assert summary == f"3 problem(s) in {tmp_path}"
    matches = [PROBLEM_LINE.match(line) for line in problems]
    assert all(matches), problems
    found = sorted((Path(m["file"]).name, int(m["line"]), m["message"]) for m in matches if m)
    assert found == [
        ("items.yaml", 5, "get_item: scope 'items:write' is not declared in service.yaml scopes"),
        ("items.yaml", 8, "get_item: path names undeclared argument {item}"),
        ("more.yaml", 4, "tools.0.x: unknown key"),
    ]
    assert all(Path(m["file"]).parent == tmp_path / "demo" for m in matches if m)


def test_check_on_a_folder_without_services_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["check", str(tmp_path)])

    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path}:1: no service folder (with service.yaml)", f"1 problem(s) in {tmp_path}"]


def test_tools_lists_every_service_with_its_endpoint_and_tools(
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = shipped()

    code = run(["tools", str(SHIPPED_SPECS)])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    headers = [line for line in lines if not line.startswith("  ")]
    assert headers == [f"{s.name}  {s.spec.endpoint}  ({len(s.tools)} tools)"
                       for s in registry.services]
    listed = [line.split() for line in lines if line.startswith("  ")]
    assert [row[0] for row in listed] == [t for s in registry.services for t in s.tools]
    ping = next(row for row in listed if row[0] == "ping")
    assert ping[1:] == ["meta", "-"]
    feedback = next(row for row in listed if row[0] == "list_feedback")
    assert feedback[1:] == ["read", "feedback:read"]


def test_tools_on_a_broken_tree_fails_with_the_problems(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["tools", str(broken_tree(tmp_path))])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.splitlines()[-1] == f"3 problem(s) in {tmp_path}"


def schema_validator(capsys: pytest.CaptureFixture[str]) -> Any:
    assert run(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert isinstance(schema, dict)
    return jsonschema_rs.validator_for(schema)


def test_schema_prints_a_2020_12_json_schema_of_both_file_kinds(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["schema"])

    schema = json.loads(capsys.readouterr().out)
    assert code == 0
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["anyOf"] == [{"$ref": "#/$defs/ServiceSpec"}, {"$ref": "#/$defs/SpecFile"}]
    assert {"ServiceSpec", "SpecFile", "ToolSpec", "InputProperty"} <= set(schema["$defs"])


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_schema_accepts_every_shipped_spec_file(
        capsys: pytest.CaptureFixture[str], path: Path) -> None:
    validator = schema_validator(capsys)

    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    errors = [e.message for e in validator.iter_errors(data)]
    assert errors == []


def test_the_shipped_tree_has_both_kinds_of_spec_file() -> None:
    names = {p.name for p in SHIPPED_FILES}

    assert "service.yaml" in names
    assert len(names) > 1


@pytest.mark.parametrize("data", [
    {**yaml.safe_load(SERVICE), "colour": "blue"},
    {**yaml.safe_load(SERVICE), "upstream": {"base_url": "https://x.test", "colour": 1}},
    {"tools": [{**yaml.safe_load(TOOL)["tools"][0], "colour": "blue"}]},
    {"tools": yaml.safe_load(TOOL)["tools"], "colour": "blue"},
    {"tools": [{**yaml.safe_load(TOOL)["tools"][0], "kind": "delete"}]},
    {"tools": [{**yaml.safe_load(TOOL)["tools"][0],
                "input": {"id": {"type": "string", "max_length": 3}}}]},
], ids=["service key", "upstream key", "tool key", "file key", "kind value", "snake case"])
def test_schema_rejects_a_file_with_an_unknown_key_or_value(
        capsys: pytest.CaptureFixture[str], data: dict[str, Any]) -> None:
    validator = schema_validator(capsys)

    assert validator.is_valid(data) is False


def test_schema_accepts_the_minimal_files_of_a_new_service(
        capsys: pytest.CaptureFixture[str]) -> None:
    validator = schema_validator(capsys)

    assert validator.is_valid(yaml.safe_load(SERVICE)) is True
    assert validator.is_valid(yaml.safe_load(TOOL)) is True


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["--version"])

    assert code == 0
    assert capsys.readouterr().out == f"mcp-gateway {__version__}\n"


def test_a_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = run([])

    assert code == 2
    assert "usage: mcp-gateway" in capsys.readouterr().err


def test_serve_refuses_to_start_on_a_broken_tree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["serve", "--specs", str(broken_tree(tmp_path)), "--port", "0"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{tmp_path / 'demo' / 'more.yaml'}:4: tools.0.x: unknown key" in err.splitlines()
    assert f"3 problem(s) in {tmp_path}" in err.splitlines()


def test_serve_refuses_to_start_on_a_folder_that_does_not_exist(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"

    code = run(["serve", "--specs", str(missing), "--port", "0"])

    assert code == 2
    assert f"{missing}:1: not a folder" in capsys.readouterr().err.splitlines()
