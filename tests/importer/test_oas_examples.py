"""import-openapi on documents nobody here wrote: every OpenAPI 3.0, 3.1 and Swagger 2.0 example
of the `@readme/oas-examples` npm package (which `make node` installs into .node/), imported into
tmp_path, loaded with the gateway's own loader, and every operation accounted for as a tool or
a skip with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.importer.operations import METHODS
from gateway.importer.run import Options, import_openapi
from gateway.importer.source import read_source
from gateway.spec.loader import load_tree
from tests.support import REPO

EXAMPLES = REPO / ".node" / "node_modules" / "@readme" / "oas-examples"
MISSING = "@readme/oas-examples is not installed in .node/ (`make node` installs it)"
LARGE = 64_000
"""Bytes past which a YAML document that also comes as JSON is left to its JSON twin: the same
operations, and seconds of parsing (readme, star-trek, readme-legacy)."""


def _documents() -> list[Path]:
    json_files = sorted(EXAMPLES.glob("*/json/**/*.json"))
    twins = {(p.parent.parent, p.stem) for p in json_files}
    yaml_files = [p for p in sorted(EXAMPLES.glob("*/yaml/**/*.yaml"))
                  if (p.parent.parent, p.stem) not in twins or p.stat().st_size <= LARGE]
    return [*json_files, *yaml_files]


DOCUMENTS = _documents()


def examples() -> list[Any]:
    return [pytest.param(path, id=str(path.relative_to(EXAMPLES))) for path in DOCUMENTS] or [
        pytest.param(None, id="not-installed", marks=pytest.mark.skip(reason=MISSING))]


def operations_in(document: dict[str, Any]) -> int:
    """Counted from the raw document, apart from the importer: every method of every path
    (a path item that is a `$ref` is followed)."""
    count = 0
    for item in (document.get("paths") or {}).values():
        if isinstance(item, dict) and isinstance(item.get("$ref"), str):
            target: Any = document
            for part in item["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            item = target
        count += sum(1 for method in METHODS if isinstance(item.get(method), dict))
    return count


@pytest.mark.parametrize("path", examples())
def test_each_example_imports_loads_and_accounts_for_every_operation(
        tmp_path: Path, path: Path) -> None:
    document, _ = read_source(str(path))
    out = tmp_path / "example"
    report = import_openapi(Options(str(path), "example", out))
    registry = load_tree(out, {})
    tools = registry.services[0].tools
    assert report.found == operations_in(document)
    assert len(report.generated) + len(report.skipped) == report.found
    assert sorted(tools) == sorted(g.tool for g in report.generated)
    assert {entry.tool for entry in report.unmapped} <= set(tools)
    assert all(entry.text for entry in [*report.skipped, *report.unmapped])
