"""Every `tests:` case written in the shipped tool specs, one test each, run by the same runner
as `mcp-gateway test` (gateway/server/case_runner.py): through the MCP endpoint of a gateway of
its own, whose upstream and token introspection are an in-memory wire answering from the case.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.server.case_runner import FoundCase, find_cases, run_case
from gateway.settings import SHIPPED_SPECS
from gateway.spec.loader import load_tree

REGISTRY = load_tree(SHIPPED_SPECS, {"MCP_GATEWAY_CONFORMANCE": "true"})
"""The shipped tree with every ${VAR:-default} at its default, the conformance service on."""
CASES = [pytest.param(found, id=f"{found.tool.name}: {found.case.name}")
         for found in find_cases(REGISTRY)]


def test_every_shipped_tool_has_a_spec_test_case() -> None:
    untested = [t.name for s in REGISTRY.services for t in s.tools.values() if not t.spec.tests]
    assert untested == []


def test_every_case_is_located_at_its_name_line() -> None:
    for found in find_cases(REGISTRY):
        line = Path(found.file).read_text(encoding="utf-8").splitlines()[found.line - 1]
        assert line.lstrip().startswith(("- name:", "- {name:")), f"{found.file}:{found.line}"


@pytest.mark.parametrize("found", CASES)
async def test_spec_case(found: FoundCase) -> None:
    result = await run_case(REGISTRY, found)

    assert result.passed, str(result)
