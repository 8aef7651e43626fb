"""The command line: `check`, `tools`, `schema`, `--version`, `serve` refusing a broken tree, and
how the commands end as real processes: a port in use, Ctrl+C, a closed pipe, the startup line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from gateway import __version__
from gateway.server.cli import main
from gateway.server.demo import DEMO_UPSTREAM_VARIABLES, INSPECTOR
from gateway.settings import SHIPPED_SPECS
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree
from tests.support import REPO, first_line, write_tree

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


# The commands as processes: each test starts `python -m gateway`, on loopback ports only.

def command_environment() -> dict[str, str]:
    """The environment without settings or upstream URLs that would change what is served."""
    skip = {*DEMO_UPSTREAM_VARIABLES, "MCP_GATEWAY_CONFORMANCE"}
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k not in skip}


def start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway", *argv], text=True,  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=command_environment())




def mcp_call(url: str, name: str) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": name, "arguments": {}}}).encode()
    request = urllib.request.Request(url, data=body, headers={  # noqa: S310 - loopback only
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        result: dict[str, Any] = json.loads(answer.read())
    return result


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize(("command", "options"), [
    ("serve", ["--port", "{port}"]),
    ("serve", ["--port", "{port}", "--workers", "2"]),
    ("sandbox", ["--port", "{port}"]),
    ("demo", ["--port", "{port}", "--sandbox-port", "0"]),
    ("demo", ["--port", "0", "--sandbox-port", "{port}"]),
], ids=["serve", "serve workers", "sandbox", "demo gateway port", "demo sandbox port"])
def test_a_port_in_use_is_one_line_on_stderr_and_exit_code_2(
        taken_port: int, command: str, options: list[str]) -> None:
    argv = [command, *(option.format(port=taken_port) for option in options)]

    finished = subprocess.run([sys.executable, "-m", "gateway", *argv],  # noqa: S603
                              capture_output=True, text=True, timeout=60,
                              env=command_environment())

    assert finished.returncode == 2
    assert finished.stderr == (f"mcp-gateway {command}: cannot listen on "
                               f"127.0.0.1:{taken_port}: address already in use\n")
    assert finished.stdout == ""


@pytest.mark.parametrize("command", ["schema", "tools"])
def test_a_closed_pipe_ends_the_output_quietly(command: str) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # as `| head -1` does once it has its line
    try:
        finished = subprocess.run([sys.executable, "-m", "gateway", command],  # noqa: S603
                                  stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
                                  env=command_environment())
    finally:
        os.close(writer)

    assert finished.stderr == ""
    assert finished.returncode == 128 + signal.SIGPIPE


def test_ctrl_c_stops_the_demo_cleanly(processes: list[subprocess.Popen[str]]) -> None:
    demo = start("demo", "--port", "0", "--sandbox-port", "0")
    processes.append(demo)
    banner = first_line(demo)
    found = re.search(r"gateway on (http://127\.0\.0\.1:\d+), sandbox upstream on "
                      r"(http://127\.0\.0\.1:\d+)$", banner.rstrip("\n"))
    assert found, banner
    assert mcp_call(found[1] + "/retently/mcp", "ping")["result"]["isError"] is False

    demo.send_signal(signal.SIGINT)
    _, err = demo.communicate(timeout=30)

    assert demo.returncode == 0
    assert "Traceback" not in err


def test_serve_prints_one_line_with_its_address_and_services(
        processes: list[subprocess.Popen[str]]) -> None:
    registry = shipped()
    serve = start("serve", "--port", "0")
    processes.append(serve)

    line = first_line(serve).rstrip("\n")

    found = re.fullmatch(rf"mcp-gateway {re.escape(__version__)} on "
                         r"(?P<url>http://127\.0\.0\.1:\d+): (?P<services>.+)", line)
    assert found, line
    assert found["services"] == ", ".join(f"{s.name} {s.spec.endpoint} ({len(s.tools)} tools)"
                                          for s in (*registry.services, *registry.views))
    assert "/retently/readonly/mcp (44 tools)" in found["services"]  # a virtual server
    with urllib.request.urlopen(found["url"] + "/healthz", timeout=10) as answer:  # noqa: S310
        assert answer.status == 200
    serve.send_signal(signal.SIGTERM)
    out, err = serve.communicate(timeout=30)
    assert serve.returncode == 0
    assert out == ""  # the startup line was the only one
    assert "Traceback" not in err


def test_the_demo_banner_pins_the_inspector_the_makefile_installs() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")

    pinned = re.search(r"@modelcontextprotocol/inspector@(\S+)", makefile)

    assert pinned, "the Makefile no longer pins the Inspector"
    assert INSPECTOR == f"@modelcontextprotocol/inspector@{pinned[1]}"
