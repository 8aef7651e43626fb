"""The command itself: the report on stdout and exit 0; one line on stderr and exit 2 for a
document it cannot read or arguments it cannot use; a document fetched over HTTP; and YAML
that reads back as exactly what was written, whatever the text in it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.importer.writer import dump
from gateway.server.cli import main
from gateway.spec.source import read_yaml
from tests.importer.support import openapi, read_back

DOCUMENT = openapi({"/pets/{id}": {
    "get": {"operationId": "getPet", "tags": ["pets"], "responses": {"200": {"description": "ok"}},
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string"}},
                           {"name": "session", "in": "cookie", "schema": {"type": "string"}}]},
    "head": {"operationId": "headPet", "responses": {"200": {"description": "ok"}}}}})


def run(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code


def test_the_report_accounts_for_every_operation_and_everything_left_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "pets.yaml"
    source.write_text(yaml.safe_dump(DOCUMENT))
    assert run(["import-openapi", str(source), "--service", "pets",
                "--out", str(tmp_path / "out")]) == 0
    report = capsys.readouterr().out
    assert "operations found:   2" in report
    assert "tools generated:    1 (1 read, 0 write) in 1 tool file(s)" in report
    assert "HEAD /pets/{id}: HEAD is not a method the gateway sends" in report
    assert "get_pet (GET /pets/{id}): cookie parameter 'session'" in report
    _, service, tools = read_back(tmp_path / "out")
    assert (service["name"], list(tools)) == ("pets", ["get_pet"])
    assert run(["check", str(tmp_path / "out")]) == 0


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read: No such file or directory"),
    ("{not json", "not valid JSON"),
    ("a: [", "not valid YAML at line 2"),
    ("- a list", "the top level is not a mapping"),
    ('{"openapi": "2.5", "paths": {}}', "not an OpenAPI 3.x or Swagger 2.0 document"),
    ('{"swagger": "2.0", "paths": []}', "`paths` is not a mapping"),
], ids=["missing", "json", "yaml", "list", "version", "paths"])
def test_an_unreadable_or_invalid_document_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None,
        message: str) -> None:
    source = tmp_path / "api.json"
    if content is not None:
        source.write_text(content)
    assert run(["import-openapi", str(source), "--service", "a",
                "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith(f"mcp-gateway import-openapi: {source}: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("service", "occupied", "message"), [
    ("Acme", False, "--service 'Acme'"),
    ("acme", True, "exists and is not an empty folder"),
])
def test_a_bad_service_name_or_a_used_folder_is_refused_before_reading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], service: str, occupied: bool,
        message: str) -> None:
    out = tmp_path / "out"
    if occupied:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    assert run(["import-openapi", str(tmp_path / "absent.json"), "--service", service,
                "--out", str(out)]) == 2
    assert message in capsys.readouterr().err


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Nothing on stderr for each request."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A folder served over HTTP on loopback, as an API publishes its description."""
    (tmp_path / "api.json").write_text(json.dumps(DOCUMENT))
    handler = partial(QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_document_is_fetched_from_an_http_url(
        served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["import-openapi", f"{served}/api.json", "--service", "pets",
                "--out", str(tmp_path / "out")]) == 0
    assert "operations found:   2" in capsys.readouterr().out
    assert run(["import-openapi", f"{served}/missing.json", "--service", "pets",
                "--out", str(tmp_path / "other")]) == 2
    assert "the server answered HTTP 404" in capsys.readouterr().err


TEXT = st.text(st.sampled_from(list(" -:#{}[]\"'\n\t\r|>&*!%@`~?,.aZ09éß\x7f\x85\u2028\ufeff"))
               | st.characters(exclude_categories=["Cs"]), max_size=12)
"""Short texts, rich in what YAML reads specially."""
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8)


# The same examples on every run, and no timing in the verdict on a busy machine.
@settings(max_examples=100, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(TEXT, JSON, max_size=4))
def test_the_yaml_written_reads_back_as_the_same_values(value: dict[str, Any]) -> None:
    assert read(dump(value)) == (value or None)


def test_half_a_character_is_written_as_the_replacement_character() -> None:
    assert read(dump({"a": "x\ud800y"})) == {"a": "x\ufffdy"}


def read(text: str) -> Any:
    """As the loader reads specs: with libyaml when PyYAML has it, stricter than Python's."""
    return read_yaml(text, "test.yaml")[0]
