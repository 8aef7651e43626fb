"""Spec source text: YAML read safely with the line of every key, `${VAR}` interpolation, and
problems located as file:line. Pure (text in, values out); the loader does the file reading.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml
from pydantic import ValidationError

from gateway.errors import SpecError, SpecProblem

SERVICE_FILE = "service.yaml"


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it (about ten times faster), else Python's."""


class _SpecLoader(SAFE_LOADER):  # type: ignore[misc,valid-type]
    """The safe loader, resolving each distinct plain scalar once a file: a spec repeats its
    keys and words (`type`, `string`, `description`) thousands of times, and PyYAML's resolver
    runs in Python for every one of them."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._plain_tags: dict[str, str] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> Any:
        if kind is not yaml.ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)
        tag = self._plain_tags.get(value)
        if tag is None:
            tag = self._plain_tags[value] = super().resolve(kind, value, implicit)
        return tag


ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


Lines = dict[tuple[str | int, ...], int]


def read_yaml(text: str, file: str) -> tuple[Any, Lines]:
    """Parse YAML safely, keeping the line of every key and list item (1-based).

    Raises:
        SpecError: a syntax error, or a key given twice in one mapping.
    """
    loader = _SpecLoader(text)
    lines: Lines = {}
    duplicates: list[SpecProblem] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        # One walk over the node tree as written (before merge keys are expanded) finds the
        # lines and the repeated keys and builds the value; PyYAML's constructor builds only
        # what is not a plain string, list or mapping (numbers, flags, dates, merges, tags).
        data = _walk(node, (), _Walk(lines, duplicates, file,
                                     lambda other: loader.construct_object(other, deep=True)))
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


_STR: Final = "tag:yaml.org,2002:str"
_SEQ: Final = "tag:yaml.org,2002:seq"
_MAP: Final = "tag:yaml.org,2002:map"


@dataclass(frozen=True, slots=True)
class _Walk:
    lines: Lines
    duplicates: list[SpecProblem]
    file: str
    construct: Callable[[yaml.Node], Any]
    """PyYAML's own constructor, for every node that is not a plain string, list or mapping."""


def _walk(node: yaml.Node, path: tuple[str | int, ...], walk: _Walk) -> Any:
    """The value of a node (as yaml.safe_load builds it), noting lines and repeated keys.
    Building plain nodes here instead of in PyYAML's constructor halves the time a large
    imported tree takes to load."""
    walk.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        built: dict[Any, Any] | None = {} if node.tag == _MAP else None
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key == "<<":  # a merge: its keys may be overridden by the mapping's own
                built = None
                continue
            if key in seen:
                walk.duplicates.append(SpecProblem(walk.file, key_node.start_mark.line + 1,
                                                   f"key {key!r} is given twice"))
            seen.add(key)
            value = _walk(value_node, (*path, key), walk)
            walk.lines[(*path, key)] = key_node.start_mark.line + 1
            if built is not None and isinstance(key_node, yaml.ScalarNode) \
                    and key_node.tag == _STR:
                built[key] = value
            else:
                built = None
        return walk.construct(node) if built is None else built
    if isinstance(node, yaml.SequenceNode):
        items = [_walk(item, (*path, index), walk) for index, item in enumerate(node.value)]
        return items if node.tag == _SEQ else walk.construct(node)
    return node.value if node.tag == _STR else walk.construct(node)


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
