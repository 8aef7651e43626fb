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


NAMED = [
    # document, (found, generated, skipped), something said in the report or written
    ("3.0/json/petstore.json", (20, 20, 0), "application/x-www-form-urlencoded is not sent"),
    ("2.0/json/petstore.json", (20, 20, 0), "'api_key' is not a header name"),
    ("3.1/json/petstore.json", (20, 20, 0), "format: \"Bearer {token}\""),
    ("2.0/json/schema-circular.json", (1, 1, 0), "refers to itself; any value accepted"),
    ("3.0/json/polymorphism.json", (13, 13, 0), "oneOf:"),
    ("3.0/json/discriminators.json", (10, 10, 0), "oneOf:"),
    ("3.0/json/parameters-style.json", (25, 16, 9), "style matrix for a scalar"),
    ("3.1/json/parameters-style.json", (25, 16, 9), "cookie parameter 'primitive'"),
    ("3.0/json/security-multiple.json", (4, 4, 0), "header: X-API-KEY"),
    ("3.1/json/security.json", (15, 15, 0), "an API key in the query"),
    ("3.0/json/callbacks.json", (1, 1, 0), "1 webhook(s) and callback(s)"),
    ("3.1/json/webhooks.json", (0, 0, 0), "1 webhook(s) and callback(s)"),
    ("3.0/json/readme-extensions.json", (12, 12, 0), "name: "),
    ("3.1/json/readme-extensions.json", (10, 10, 0), "name: "),
    ("3.0/json/server-variables.json", (4, 1, 3), "its own server https://httpbin.com"),
]


@pytest.mark.parametrize(("name", "counts", "said"), NAMED, ids=[n[0] for n in NAMED])
def test_what_the_named_examples_become(tmp_path: Path, name: str, counts: tuple[int, int, int],
                                        said: str) -> None:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(MISSING)
    out = tmp_path / "example"
    report = import_openapi(Options(str(path), "example", out))
    assert (report.found, len(report.generated), len(report.skipped)) == counts
    written = "\n".join(p.read_text() for p in sorted(out.glob("*.yaml")))
    assert said in f"{report.render()}\n{written}"
