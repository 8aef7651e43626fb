"""The spec loader: a tree of service folders in, one Registry out, or every problem with file:line.

Reading files is its only I/O; parsing (source.py), checks (checks.py) and compiling
(compiler.py) are pure. Each tool is checked, compiled once, and its compiled references
checked; a tree either loads whole or raises one SpecError listing every problem found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.errors import SpecError, SpecProblem
from gateway.spec.checks import (
    Problem,
    check_declarations,
    check_prompt_declarations,
    check_prompt_references,
    check_references,
    check_resource_uri,
    check_service,
)
from gateway.spec.compile_resources import compile_prompt, compile_resource
from gateway.spec.compiled import (
    CompiledPrompt,
    CompiledResource,
    CompiledService,
    CompiledTool,
    Origin,
    Registry,
)
from gateway.spec.compiler import compile_tool
from gateway.spec.fragments import fragments_of
from gateway.spec.located import CompileProblem
from gateway.spec.models import ServiceSpec
from gateway.spec.source import (
    SERVICE_FILE,
    Lines,
    interpolate,
    line_of,
    pydantic_problems,
    read_yaml,
)
from gateway.spec.tools import SpecFile, ToolSpec
from gateway.spec.views import unknown_selectors, views_of

Loc = tuple[str | int, ...]
Model = TypeVar("Model", bound=BaseModel)
Compiled = TypeVar("Compiled")


def load_tree(root: Path, env: Mapping[str, str]) -> Registry:
    """Load every service folder under `root` (a folder with service.yaml, or a folder of them).

    Raises:
        SpecError: with every problem of every file.
    """
    if not root.is_dir():
        raise SpecError([SpecProblem(str(root), 1, "not a folder")])
    folders = [root] if (root / SERVICE_FILE).is_file() else sorted(
        p for p in root.iterdir() if p.is_dir() and (p / SERVICE_FILE).is_file()
    )
    if not folders:
        raise SpecError([SpecProblem(str(root), 1, f"no service folder (with {SERVICE_FILE})")])
    problems: list[SpecProblem] = []
    services: list[CompiledService] = []
    for folder in folders:
        try:
            services.append(load_service(folder, env))
        except SpecError as exc:
            problems.extend(exc.problems)
    seen: dict[tuple[str, str], str] = {}
    for service in services:
        claims: list[tuple[Loc, str, str]] = [
            (("name",), "name", service.spec.name),
            (("endpoint",), "endpoint", service.spec.endpoint),
            *((("endpoints", i, "path"), "endpoint", e.path)
              for i, e in enumerate(service.spec.endpoints))]
        for key, label, value in claims:
            if (label, value) in seen:
                problems.append(SpecProblem(
                    f"{service.folder}/{SERVICE_FILE}", line_of(service.lines, key),
                    f"{label} {value!r} is already used by {seen[label, value]}"))
            seen[label, value] = service.folder
    if problems:
        raise SpecError(problems)
    served = tuple(s for s in services if s.spec.enabled)
    return Registry(served, tuple(view for s in served for view in views_of(s)))


@dataclass
class _File:
    """One file of a service folder, read: its model (None when unreadable) and key lines."""

    name: str
    model: Any = None
    lines: Lines = field(default_factory=dict)


def load_service(folder: Path, env: Mapping[str, str]) -> CompiledService:
    """Load one service folder: service.yaml plus every other *.yaml / *.yml file in it.

    Raises:
        SpecError: with every problem of the folder.
    """
    problems: list[SpecProblem] = []
    head = _read(folder / SERVICE_FILE, ServiceSpec, problems, env)
    files = [_read(path, SpecFile, problems)
             for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
             if path.name != SERVICE_FILE]
    service = head.model
    if not isinstance(service, ServiceSpec):
        raise SpecError(problems)
    problems.extend(_located(head, (), check_service(service)))
    built = _Built(service, problems)
    with fragments_of(service.fragments):
        for file in files:
            if isinstance(file.model, SpecFile):
                built.add_file(file)
    declared_tools = {t.name for f in files if isinstance(f.model, SpecFile) for t in f.model.tools}
    problems.extend(
        SpecProblem(head.name, line_of(head.lines, ("auth", "anonymous_tools")),
                    f"auth.anonymous_tools names unknown tool {name!r}")
        for name in service.auth.anonymous_tools if name not in declared_tools)
    write_tools = {t.name for f in files if isinstance(f.model, SpecFile) for t in f.model.tools
                   if t.kind == "write"}
    problems.extend(
        SpecProblem(head.name, line_of(head.lines, ("writes", "require_human")),
                    f"writes.require_human names {name!r}, which is no write tool of this service")
        for name in service.writes.require_human if name not in write_tools)
    if problems:
        raise SpecError(problems)
    compiled = CompiledService(spec=service, tools=built.tools, folder=str(folder),
                               lines=head.lines, resources=built.resources,
                               prompts=built.prompts)
    problems.extend(
        SpecProblem(head.name, line_of(head.lines, ("endpoints", index, which)),
                    f"endpoints[{index}].{which}: {selector!r} names nothing this service has")
        for index, which, selector in unknown_selectors(compiled))
    if problems:
        raise SpecError(problems)
    return compiled


def _read(path: Path, model: type[Model], problems: list[SpecProblem],
          env: Mapping[str, str] | None = None) -> _File:
    """Read and validate one file; its problems are added to `problems`."""
    read = _File(str(path))
    try:
        data, read.lines = read_yaml(path.read_text(encoding="utf-8"), read.name)
        read.model = model.model_validate(interpolate(data or {}, env) if env is not None
                                          else data or {})
    except SpecError as exc:
        problems.extend(exc.problems)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, read.name, read.lines))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problems.append(SpecProblem(read.name, 1, f"cannot read the file: {reason}"))
    return read


def _located(file: _File, where: Loc, found: list[Problem], name: str = "") -> list[SpecProblem]:
    prefix = f"{name}: " if name else ""
    return [SpecProblem(file.name, line_of(file.lines, (*where, *loc)), prefix + message)
            for loc, message in found]


def _origin(file: _File, index: int, tool: ToolSpec) -> Origin:
    where = ("tools", index)
    return Origin(file.name, line_of(file.lines, where), tuple(
        line_of(file.lines, (*where, "tests", case)) for case in range(len(tool.tests))))


def _compile_located(tool: ToolSpec, service: ServiceSpec, origin: Origin) -> CompiledTool:
    return replace(compile_tool(tool, service), origin=origin)


class _Built:
    """The compiled items of one service, collected file by file, with their problems."""

    def __init__(self, service: ServiceSpec, problems: list[SpecProblem]) -> None:
        self.service = service
        self.problems = problems
        self.tools: dict[str, CompiledTool] = {}
        self.resources: dict[str, CompiledResource] = {}
        self.prompts: dict[str, CompiledPrompt] = {}

    def add_file(self, file: _File) -> None:
        spec_file: SpecFile = file.model
        service = self.service
        for index, tool in enumerate(spec_file.tools):
            self._add(file, ("tools", index), tool.name, self.tools,
                      check_declarations(tool, service),
                      partial(_compile_located, tool, service, _origin(file, index, tool)),
                      lambda compiled: check_references(compiled, service))
        for index, resource in enumerate(spec_file.resources):
            read = resource.as_tool()
            self._add(file, ("resources", index), resource.name, self.resources,
                      [*check_resource_uri(resource.uri, read),
                       *check_declarations(read, service)],
                      partial(compile_resource, resource, service),
                      lambda compiled: check_references(compiled.tool, service))
        for index, prompt in enumerate(spec_file.prompts):
            self._add(file, ("prompts", index), prompt.name, self.prompts,
                      check_prompt_declarations(prompt), partial(compile_prompt, prompt),
                      check_prompt_references)

    def _add(self, file: _File, where: Loc, name: str, into: dict[str, Compiled],
             declared: list[Problem], build: Callable[[], Compiled],
             references: Callable[[Compiled], list[Problem]]) -> None:
        """Check, compile once, check the compiled references; keep it only when all pass, and
        report every problem found on the way."""
        kind = str(where[0])[:-1]
        if name in into:
            self.problems.append(SpecProblem(file.name, line_of(file.lines, (*where, "name")),
                                             f"{kind} {name!r} is defined twice in this service"))
            return
        self.problems.extend(_located(file, where, declared, name))
        if any(loc[0] in ("input", "arguments") for loc, _ in declared):
            return  # a broken pattern breaks the argument validator: said once is enough
        try:
            compiled = build()
        except CompileProblem as exc:
            self.problems.extend(_located(file, where, [(exc.loc, exc.message)], name))
            return
        found = references(compiled)
        self.problems.extend(_located(file, where, found, name))
        if not declared and not found:
            into[name] = compiled
