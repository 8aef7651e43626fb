"""What the commands say about failures they expect: a spec tree's problems, a port that cannot be
bound. One line each, on stderr, never a traceback. Off the request path.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.errors import SpecError
from gateway.server.listen import base_url
from gateway.settings import spec_environment
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree


def load_or_report(folder: Path) -> Registry | None:
    """The tree under `folder`, or None once every problem of it is printed."""
    try:
        return load_tree(folder, spec_environment())
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {folder}", file=sys.stderr)
        return None


def cannot_listen(command: str, host: str, port: int, exc: OSError) -> int:
    """Say why `command` cannot listen; the exit code for it (2)."""
    reason = (exc.strerror or str(exc)).lower()
    where = base_url(host, port).removeprefix("http://")
    print(f"mcp-gateway {command}: cannot listen on {where}: {reason}", file=sys.stderr)
    return 2


def refuse(command: str, message: str) -> int:
    """A setting the command cannot work with; the exit code for it (2)."""
    print(f"mcp-gateway {command}: {message}", file=sys.stderr)
    return 2
