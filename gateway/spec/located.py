"""Where a spec value that does not compile is written: the key path the loader turns into a
file line. Pure; shared by the compiler's modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import jmespath.exceptions

from gateway.spec.source import one_line


class CompileProblem(ValueError):
    """A spec value that does not compile, with the key path where it is written (below the
    tool, resource or prompt), so the loader can name its line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        self.loc = loc
        self.message = message
        super().__init__(message)


@contextmanager
def located(*loc: str | int) -> Iterator[None]:
    """Compile what the block compiles as the value at `loc`; nested blocks add to the path.

    Raises:
        CompileProblem: whatever the block raised, with its location.
    """
    try:
        yield
    except CompileProblem as inner:
        raise CompileProblem((*loc, *inner.loc), inner.message) from inner
    except jmespath.exceptions.JMESPathError as exc:
        raise CompileProblem(loc, f"invalid JMESPath expression: {one_line(exc)}") from exc
    except ValueError as exc:
        raise CompileProblem(loc, one_line(exc)) from exc
