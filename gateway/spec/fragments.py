"""Shared JMESPath fragments: a service's `fragments:` named once, used as `$name` in any
expression of its tools (a select, a preview or lookup select, a filter field, a `$expr`...).
Pure.

A use is replaced by the fragment's text in parentheses before the expression is compiled, so a
fragment behaves as one term wherever it stands (`$item.notes`, `sort($tags)`); a fragment that
is one multi-select hash (`{id: id, ...}`) goes in as it is, so it can follow a projection's
`.` (`data.items[].$row`). Fragments may use
other fragments; a cycle, or a name no fragment has, is a load error. Text inside JMESPath string
literals ('...', "...", `...`) is never touched.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Final

NAME: Final = re.compile(r"\$([a-z_][a-z0-9_]*)")
_LITERALS: Final = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`")
_DEPTH: Final = 10
_NONE: Final[Mapping[str, str]] = MappingProxyType({})
_IN_FORCE: ContextVar[Mapping[str, str]] = ContextVar("fragments", default=_NONE)


@contextlib.contextmanager
def fragments_of(named: Mapping[str, str]) -> Iterator[None]:
    """The fragments `expand` uses while a service's expressions are compiled."""
    token = _IN_FORCE.set(named)
    try:
        yield
    finally:
        _IN_FORCE.reset(token)


def expand(text: str, named: Mapping[str, str] | None = None, *, depth: int = 0) -> str:
    """`text` with each `$name` outside string literals replaced by `(fragment)`.

    Raises:
        ValueError: a name with no fragment, or fragments that use each other in a cycle.
    """
    if "$" not in text:
        return text
    named = _IN_FORCE.get() if named is None else named
    if depth > _DEPTH:
        raise ValueError("fragments use each other in a cycle (or nest over 10 deep)")

    def one(found: re.Match[str]) -> str:
        name = found[1]
        if name not in named:
            known = ", ".join(f"${n}" for n in sorted(named)) or "none"
            raise ValueError(f"unknown fragment ${name} (this service has: {known})")
        text = expand(named[name], named, depth=depth + 1).strip()
        # A multi-select hash is one term already, and may follow a `.` (a projection's
        # `items[].$row`), where parentheses are not allowed.
        return text if _one_hash(text) else f"({text})"

    pieces, last = [], 0  # substitute between string literals, never inside one
    for literal in _LITERALS.finditer(text):
        pieces.append(NAME.sub(one, text[last:literal.start()]))
        pieces.append(literal[0])
        last = literal.end()
    pieces.append(NAME.sub(one, text[last:]))
    return "".join(pieces)


def _one_hash(text: str) -> bool:
    """Whether `text` is one `{...}` multi-select hash (its first brace closes at its end)."""
    if not (text.startswith("{") and text.endswith("}")):
        return False
    depth = 0
    for index, char in enumerate(_LITERALS.sub("''", text)):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return index == len(_LITERALS.sub("''", text)) - 1
    return False
