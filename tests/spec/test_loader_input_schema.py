"""Tools that publish a full JSON Schema (`input_schema`) are checked like `input` ones: through
`mcp-gateway check` and the loader, every problem as file:line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.errors import SpecError
from gateway.spec.loader import load_tree

SERVICE = textwrap.dedent("""\
    version: 1
    name: demo
    title: Demo
    endpoint: /demo/mcp
    upstream:
      base_url: https://api.example.test/v1
    """)

RAW_SCHEMA_TOOL = textwrap.dedent("""\
    tools:
      - name: get_item
        kind: read
        description: Get one item by id.
        input_schema:
          type: object
          properties:
            id: {type: string}
          {required}
        request:
          method: GET
          path: /items/{id}
    """)
"""Line 12 is the path."""


def tree(root: Path, required: str) -> Path:
    (root / "demo").mkdir()
    (root / "demo" / "service.yaml").write_text(SERVICE)
    tool = RAW_SCHEMA_TOOL.replace("{required}", required)
    (root / "demo" / "items.yaml").write_text(tool)
    return root


def test_a_path_argument_required_by_a_raw_schema_loads(tmp_path: Path) -> None:
    registry = load_tree(tree(tmp_path, "required: [id]"), {})

    tool = registry.services[0].tools["get_item"]
    assert tool.request is not None
    assert [p.argument for p in tool.request.path if p.argument] == ["id"]


def test_an_optional_path_argument_of_a_raw_schema_is_a_located_problem(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_tree(tree(tmp_path, ""), {})

    (problem,) = caught.value.problems
    assert problem.file.endswith("items.yaml")
    assert problem.line == 12
    assert "must be required or have a default" in problem.message


def test_check_reports_it_as_file_and_line_without_a_traceback(tmp_path: Path) -> None:
    tree(tmp_path, "")

    done = subprocess.run(  # noqa: S603 - this interpreter and fixed arguments, no shell
        [sys.executable, "-m", "gateway", "check", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "items.yaml:12: get_item: path argument {id} must be required" in done.stderr
