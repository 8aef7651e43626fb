"""The compiled row loops (_rows.c); the pure-Python twins are the reference."""

from collections.abc import Callable
from typing import Any

def walk(value: Any, plain: set[Any], special: set[Any], dropped: set[Any],
         renamed: dict[Any, str], learn: Callable[[Any], bool],
         pseudonym: Callable[[str], str], other: Callable[[Any], Any],
         scrub: Callable[[str], str] | None,
         merged: Callable[[list[tuple[Any, Any]]], dict[Any, Any]]) -> Any: ...

def pick(fields: tuple[tuple[str, str], ...], value: Any) -> Any: ...

def wide_ints(value: Any) -> bool: ...

def quoted(data: bytes) -> bytes: ...

# fields: (name as JSON, key, verdict), or for a nested selection (name as JSON, key, 0,
# ((name as JSON, key, verdict), ...)).
def page(answer: Any, path: tuple[str, ...], fields: tuple[tuple[Any, ...], ...],
         verdict: Callable[[str], int] | None,
         pseudonym: Callable[[str], str] | dict[str, str],
         scrub: Callable[[str], str] | None, fragment: Callable[[bytes], Any]
         ) -> tuple[list[Any], int, int, int] | None: ...
