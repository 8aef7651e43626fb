"""read_yaml builds values itself (strings, lists, mappings) while it notes lines and repeated
keys: whatever it builds must be exactly what yaml.safe_load builds, on every shipped spec file
and on the YAML features a spec may use (anchors, merge keys, explicit tags, dates, keys that
are not strings)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gateway.errors import SpecError
from gateway.settings import SHIPPED_SPECS
from gateway.spec.source import read_yaml
from tests.support import REPO

FEATURES = [
    "a: 1\nb: [1, 2.5, true, null, ~, '3', '', \"\", yes, 'true', 0x1f, 1_000, .inf, -.inf]\n",
    "base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\nd: {<<: [*b, {z: 4}]}\n",
    "d: 2026-01-01\nt: 2026-01-01T10:00:00Z\nq: '2026-01-01'\n",
    "1: one\ntrue: yes\nnull: n\n2.5: x\n",
    "s: !!set {a, b}\no: !!omap [a: 1, b: 2]\np: !!pairs [a: 1, a: 2]\n",
    "- &x [1, {k: v}]\n- *x\n",
    "k: !!str 12\nf: !!float 1\ni: !!int '7'\nm: !!map {a: 1}\nl: !!seq [1]\n",
    "'': empty\nblock: |\n  text\n  more\nfolded: >\n  one\n  two\n",
    "just text", "", "~", "- 1\n- '1'\n- 1\n- \"1\"\n", "b: !!binary aGVsbG8=\n",
    "deep: {a: {b: {c: [{d: e}, [f, [g]]]}}}\n",
]


def safe_load(text: str) -> Any:
    return yaml.safe_load(text)


@pytest.mark.parametrize("text", FEATURES)
def test_values_are_those_of_safe_load(text: str) -> None:
    built, _ = read_yaml(text, "f.yaml")
    assert repr(built) == repr(safe_load(text))


def test_every_shipped_spec_file_reads_as_safe_load_reads_it() -> None:
    files = [*sorted(SHIPPED_SPECS.rglob("*.yaml")), *sorted((REPO / "conformance").glob("*.yml"))]
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert repr(read_yaml(text, str(path))[0]) == repr(safe_load(text)), path


def test_lines_are_kept_for_keys_and_items() -> None:
    _, lines = read_yaml("a:\n  b: 1\n  c:\n    - x\n    - y\n", "f.yaml")
    assert lines[("a",)] == 1
    assert lines[("a", "b")] == 2
    assert lines[("a", "c", 1)] == 5


@pytest.mark.parametrize(("text", "message"), [
    ("a: 1\nb: 2\na: 3\n", "f.yaml:3: key 'a' is given twice"),
    ("? [a, b]\n: v\n", "f.yaml:1: YAML syntax error: found unhashable key"),
    ("a: [1, 2\n", "YAML syntax error"),
])
def test_repeated_keys_and_broken_yaml_are_located_problems(text: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        read_yaml(text, "f.yaml")
    assert message in str(raised.value)


def test_a_plain_scalar_resolves_by_its_text_not_by_the_first_spelling_met() -> None:
    """Each distinct plain scalar is resolved once a file: a quoted '1' met first must not make
    a later plain 1 a string, nor the other way round."""
    built, _ = read_yaml("- '1'\n- 1\n- 'true'\n- true\n- 1\n- '1'\n", "f.yaml")
    assert built == ["1", 1, "true", True, 1, "1"]
