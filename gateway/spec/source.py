"""Spec source text: YAML read safely with the line of every key, `${VAR}` interpolation, and
problems located as file:line. Pure (text in, values out); the loader does the file reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import SpecError, SpecProblem

SERVICE_FILE = "service.yaml"


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it (about ten times faster), else Python's."""


ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


Lines = dict[tuple[str | int, ...], int]


def read_yaml(text: str, file: str) -> tuple[Any, Lines]:
    """Parse YAML safely, keeping the line of every key and list item (1-based).

    Raises:
        SpecError: a syntax error, or a key given twice in one mapping.
    """
    loader = SAFE_LOADER(text)
    lines: Lines = {}
    duplicates: list[SpecProblem] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        # Walk the node tree as written, before merge keys (<<) are expanded into it.
        _walk(node, (), lines, duplicates, file)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([SpecProblem(file, line, f"YAML syntax error: {problem}")]) from exc
    finally:
        loader.dispose()
    if duplicates:
        raise SpecError(duplicates)
    return data, lines


def _walk(
    node: yaml.Node, path: tuple[str | int, ...], lines: Lines, dup: list[SpecProblem], file: str
) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key == "<<":  # a merge: its keys may be overridden by the mapping's own
                continue
            if key in seen:
                dup.append(SpecProblem(file, key_node.start_mark.line + 1,
                                       f"key {key!r} is given twice"))
            seen.add(key)
            _walk(value_node, (*path, key), lines, dup, file)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, dup, file)


def line_of(lines: Lines, loc: tuple[str | int, ...]) -> int:
    """The line of the deepest located ancestor of `loc`."""
    for end in range(len(loc), -1, -1):
        if (found := lines.get(tuple(loc[:end]))) is not None:
            return found
    return 1


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (jmespath and jsonschema messages span several)."""
    return " ".join(str(exc).split())


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a service.yaml value."""
    if isinstance(value, str):
        return ENV_REFERENCE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


def pydantic_problems(exc: ValidationError, file: str, lines: Lines,
                       prefix: tuple[str | int, ...] = ()) -> list[SpecProblem]:
    problems = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
        where = ".".join(str(p) for p in loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(SpecProblem(file, line_of(lines, (*prefix, *loc)), f"{where}: {message}"))
    return problems
