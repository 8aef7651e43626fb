"""`write.preview_checks`: rules over a write's preview read, checked when the tree loads like
every other template (undeclared arguments, a rule with no read to check)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.spec.loader import load_tree
from tests.spec.test_loader import SERVICE
from tests.support import only_problem, write_tree

RETITLE = textwrap.dedent("""\
    tools:
      - name: retitle
        kind: write
        description: Retitle an item.
        scopes: ["items:read"]
        input:
          id: {type: string, required: true}
        write:
          preview: {method: GET, path: '/items/{id}'}
          preview_checks:
            - value: {$expr: 'current.locked'}
              op: ne
              than: true
              message: 'item {id} is locked'
        request: {method: PUT, path: '/items/{id}', body: {title: x}}
    """)
"""A valid write tool. Line 9: preview, 10: preview_checks, 14: message."""


def test_a_valid_rule_compiles_onto_the_preview(tmp_path: Path) -> None:
    write_tree(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": RETITLE})

    preview = load_tree(tmp_path, {}).services[0].tools["retitle"].preview

    assert preview is not None and len(preview.checks) == 1


@pytest.mark.parametrize(("text", "line", "fragment"), [
    (RETITLE.replace("item {id} is locked", "item {item} is locked"), 14,
     "retitle: message names undeclared argument {item}"),
    (RETITLE.replace("      preview: {method: GET, path: '/items/{id}'}\n", ""), 8,
     "tools.0.write: Value error, `preview_checks` check the preview read"),
])
def test_a_bad_preview_rule_is_reported_at_its_key(tmp_path: Path, text: str, line: int,
                                                   fragment: str) -> None:
    problem = only_problem(tmp_path, {"demo/service.yaml": SERVICE, "demo/items.yaml": text})
    assert problem.line == line and problem.message.startswith(fragment), str(problem)
