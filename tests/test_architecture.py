"""The package's shape, kept honest: small modules and functions, the pure core free of HTTP
libraries, each HTTP client behind its one module, no import cycles, no sandbox on the request
path. Read from the source with `ast`, so a violation names its file and line."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
EDGES = {
    "aiohttp": ("gateway/server/", "gateway/upstream/aiohttp_wire.py"),
    "httpx": ("gateway/upstream/httpx_wire.py",),
    "redis": ("gateway/writes/redis_store.py",),
}
"""Third-party I/O libraries and the only modules allowed to import them."""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def name_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imports(path: Path, *, top_level_only: bool) -> Iterator[tuple[str, int]]:
    """(imported module, line) of every import in a module; a `from a import b` also yields
    `a.b`, which is a module when b is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            yield from ((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)


def test_the_package_is_read_from_its_source() -> None:
    assert len(modules()) > 30


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_the_bound(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path}: {lines} lines"


def test_no_function_is_longer_than_the_bound() -> None:
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path}:{node.lineno}: {node.name} has {length} lines")
    assert long == []


def test_each_io_library_is_imported_only_at_its_edge() -> None:
    found = []
    for path in modules():
        where = path.relative_to(PACKAGE.parent).as_posix()
        for module, line in imports(path, top_level_only=False):
            library = module.split(".")[0]
            allowed = EDGES.get(library)
            if allowed is not None and not where.startswith(allowed):
                found.append(f"{where}:{line}: imports {module}")
    assert found == []


COMMANDS = frozenset({"cli.py", "demo.py", "serve.py"})
"""The command line: off the request path, the only modules that may start the sandbox."""


def test_the_request_path_never_imports_the_sandbox() -> None:
    found = [f"{path}:{line}: imports {module}"
             for path in modules() if path.name not in COMMANDS
             for module, line in imports(path, top_level_only=False)
             if module.split(".")[0] == "sandbox"]
    assert found == []


def test_there_are_no_import_cycles_between_modules() -> None:
    known = {name_of(path): path for path in modules()}
    graph = {name: {module for module, _ in imports(path, top_level_only=True)
                    if module in known and module != name}
             for name, path in known.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
