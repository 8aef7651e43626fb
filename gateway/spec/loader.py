"""Spec loader: reads a tree of service folders, validates it, reports every problem with file:line.

File reading is the only I/O; parsing, interpolation, validation and compilation are pure. A tree
either loads whole into a Registry or raises one SpecError listing every problem found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import jmespath.exceptions
import yaml
from pydantic import ValidationError

from gateway.errors import SpecError, SpecProblem
from gateway.spec.compiled import (
    CompiledPrompt,
    CompiledResource,
    CompiledService,
    CompiledTool,
    Registry,
    compile_path,
    compile_prompt,
    compile_resource,
    compile_tool,
)
from gateway.spec.jmes import compile_expression
from gateway.spec.models import PromptSpec, RequestSpec, ServiceSpec, SpecFile, ToolSpec
from gateway.spec.templates import (
    Ref,
    TemplateSyntaxError,
    compile_template,
    compile_value,
    value_refs,
)

SERVICE_FILE = "service.yaml"
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it (about ten times faster), else Python's."""
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
Lines = dict[tuple[str | int, ...], int]


def read_yaml(text: str, file: str) -> tuple[Any, Lines]:
    """Parse YAML safely, keeping the line of every key and list item (1-based).

    Raises:
        SpecError: a syntax error, or a key given twice in one mapping.
    """
    loader = _SAFE_LOADER(text)
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
        return _ENV.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


def _pydantic_problems(exc: ValidationError, file: str, lines: Lines,
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
    seen: dict[str, str] = {}
    for service in services:
        for field, key in (("endpoint", service.spec.endpoint), ("name", service.spec.name)):
            if key in seen:
                problems.append(SpecProblem(f"{service.folder}/{SERVICE_FILE}",
                                            service.lines.get((field,), 1),
                                            f"{field} {key!r} is already used by {seen[key]}"))
            seen[key] = service.folder
    if problems:
        raise SpecError(problems)
    return Registry(tuple(s for s in services if s.spec.enabled))


def load_service(folder: Path, env: Mapping[str, str]) -> CompiledService:
    """Load one service folder: service.yaml plus every other *.yaml / *.yml file in it.

    Raises:
        SpecError: with every problem of the folder.
    """
    problems: list[SpecProblem] = []
    service_file = str(folder / SERVICE_FILE)
    service: ServiceSpec | None = None
    service_lines: Lines = {}
    try:
        data, service_lines = read_yaml(
            (folder / SERVICE_FILE).read_text(encoding="utf-8"), service_file
        )
        service = ServiceSpec.model_validate(interpolate(data or {}, env))
    except SpecError as exc:
        problems.extend(exc.problems)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, service_file, service_lines))

    files: list[tuple[SpecFile, str, Lines]] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        if path.name == SERVICE_FILE:
            continue
        file = str(path)
        try:
            data, lines = read_yaml(path.read_text(encoding="utf-8"), file)
            files.append((SpecFile.model_validate(data or {}), file, lines))
        except SpecError as exc:
            problems.extend(exc.problems)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, file, lines))
    if service is None:
        raise SpecError(problems)
    problems.extend(_check_service(service, service_file, service_lines))
    tools: dict[str, CompiledTool] = {}
    resources: dict[str, CompiledResource] = {}
    prompts: dict[str, CompiledPrompt] = {}
    for spec_file, file, lines in files:
        for index, tool in enumerate(spec_file.tools):
            compiled = _compile_checked(tool, service, file, lines, ("tools", index), tools,
                                        problems, partial(compile_tool, tool, service))
            if compiled is not None:
                tools[tool.name] = compiled
        for index, resource in enumerate(spec_file.resources):
            where = ("resources", index)
            as_tool = resource.as_tool()
            for variable in re.findall(r"\{([^{}]*)\}", resource.uri):
                declared = resource.input.get(variable)
                if declared is None or declared.required is not True:
                    problems.append(SpecProblem(file, line_of(lines, (*where, "uri")),
                                                f"{resource.name}: URI variable {{{variable}}} "
                                                "must be a required input"))
            built = _compile_checked(as_tool, service, file, lines, where, resources, problems,
                                     partial(compile_resource, resource, service))
            if built is not None:
                resources[resource.name] = built
        for index, prompt in enumerate(spec_file.prompts):
            problems_before = len(problems)
            _check_prompt(prompt, file, lines, ("prompts", index), problems)
            if prompt.name in prompts:
                problems.append(SpecProblem(file, line_of(lines, ("prompts", index, "name")),
                                            f"prompt {prompt.name!r} is defined twice"))
            elif len(problems) == problems_before:
                prompts[prompt.name] = compile_prompt(prompt)
    declared_tools = {t.name for f, *_ in files for t in f.tools}
    problems.extend(
        SpecProblem(service_file, line_of(service_lines, ("auth", "anonymous_tools")),
                    f"auth.anonymous_tools names unknown tool {name!r}")
        for name in service.auth.anonymous_tools if name not in declared_tools)
    if problems:
        raise SpecError(problems)
    return CompiledService(spec=service, tools=tools, folder=str(folder), lines=service_lines,
                           resources=resources, prompts=prompts)


Compiled = TypeVar("Compiled")


def _compile_checked(tool: ToolSpec, service: ServiceSpec, file: str, lines: Lines,
                     where: tuple[str | int, ...], seen: Mapping[str, object],
                     problems: list[SpecProblem], build: Callable[[], Compiled]
                     ) -> Compiled | None:
    """Check a tool (or a resource's read) and compile it; None when it has problems."""
    kind = str(where[0])[:-1]
    if tool.name in seen:
        problems.append(SpecProblem(file, line_of(lines, (*where, "name")),
                                    f"{kind} {tool.name!r} is defined twice in this service"))
        return None
    found = _check_tool(tool, service, file, lines, where)
    if found:
        problems.extend(found)
        return None
    try:
        return build()
    except (ValueError, TemplateSyntaxError, jmespath.exceptions.JMESPathError) as exc:
        problems.append(SpecProblem(file, line_of(lines, where), f"{tool.name}: {one_line(exc)}"))
        return None


def _check_prompt(prompt: PromptSpec, file: str, lines: Lines, where: tuple[str | int, ...],
                  problems: list[SpecProblem]) -> None:
    arguments = {a.name for a in prompt.arguments}
    for index, argument in enumerate(prompt.arguments):
        if argument.pattern is not None:
            try:
                re.compile(argument.pattern)
            except re.error as exc:
                problems.append(SpecProblem(
                    file, line_of(lines, (*where, "arguments", index, "pattern")),
                    f"{prompt.name}: invalid pattern: {exc}"))
    for index, message in enumerate(prompt.messages):
        loc = (*where, "messages", index, "text" if message.text is not None else "content")
        try:
            refs = (compile_template(message.text).refs if message.text is not None
                    else tuple(value_refs(compile_value(message.content))))
        except TemplateSyntaxError as exc:
            problems.append(SpecProblem(file, line_of(lines, loc), f"{prompt.name}: {exc}"))
            continue
        problems.extend(
            SpecProblem(file, line_of(lines, loc),
                        f"{prompt.name}: message names undeclared argument {{{ref.name}}}")
            for ref in refs if ref.source == "arg" and ref.name not in arguments)


def _check_service(service: ServiceSpec, file: str, lines: Lines) -> list[SpecProblem]:
    problems = []
    if service.auth.resolver == "introspection" and not service.auth.introspection_url:
        problems.append(SpecProblem(file, line_of(lines, ("auth", "resolver")),
                                    "auth.resolver introspection needs auth.introspection_url"))
    if service.auth.token_pattern is not None:
        try:
            re.compile(service.auth.token_pattern)
        except re.error as exc:
            problems.append(SpecProblem(file, line_of(lines, ("auth", "token_pattern")),
                                        f"auth.token_pattern: invalid regular expression: {exc}"))
    return problems


def _check_tool(tool: ToolSpec, service: ServiceSpec, file: str, lines: Lines,
                where: tuple[str | int, ...]) -> list[SpecProblem]:
    """Cross-field checks a schema cannot express."""
    problems: list[SpecProblem] = []

    def report(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(SpecProblem(file, line_of(lines, (*where, *loc)),
                                    f"{tool.name}: {message}"))

    raw_properties = (tool.input_schema or {}).get("properties") or {}
    names = _Names(set(tool.input) | set(raw_properties) | set(tool.lookups),
                   {"account", "subject", *service.auth.claims.extra})
    vocabulary = {s.name for s in service.scopes}
    for scope in tool.scopes:
        if vocabulary and scope not in vocabulary:
            report(("scopes",), f"scope {scope!r} is not declared in service.yaml scopes")
    for name, prop in tool.input.items():
        if prop.pattern is not None:
            try:
                re.compile(prop.pattern)
            except re.error as exc:
                report(("input", name, "pattern"), f"invalid pattern: {exc}")
    if tool.response.select is not None:
        try:
            compile_expression(tool.response.select)
        except (jmespath.exceptions.JMESPathError, ValueError) as exc:
            report(("response", "select"), f"invalid JMESPath expression: {one_line(exc)}")
    schema = tool.response.output_schema
    if schema is not None and schema.get("type") != "object":
        report(("response", "output_schema"), "output_schema must have type: object")
    requests: list[tuple[tuple[str | int, ...], RequestSpec]] = []
    if tool.request is not None:
        requests.append((("request",), tool.request))
    if tool.collect is not None:
        requests.append((("collect", "request"), tool.collect.request))
    if tool.write is not None and tool.write.preview is not None:
        requests.append((("write", "preview"), tool.write.preview))
    requests.extend((("lookups", name, "request"), lookup.request)
                    for name, lookup in tool.lookups.items())
    for loc, request in requests:
        _check_request(request, loc, tool, names, report)
    values: list[tuple[tuple[str | int, ...], Any]] = [
        (("result",), tool.result), (("response", "extra"), tool.response.extra),
        (("response", "empty_message"), tool.response.empty_message),
        (("response", "content"), tool.response.content)]
    if tool.collect is not None:
        values.append((("collect", "limit"), tool.collect.limit))
    values += [(("filter", i, "value"), c.value) for i, c in enumerate(tool.filter)]
    for index, check in enumerate(tool.checks):
        values += [(("checks", index, key), getattr(check, key))
                   for key in ("value", "than", "message")]
    if tool.aggregate is not None:
        values.append((("aggregate", "by"), tool.aggregate.by))
        if tool.aggregate.compare is not None:
            values.append((("aggregate", "compare", "days"), tool.aggregate.compare.days))
    for loc, value in values:
        _check_refs(value, loc, names, report)
    return problems


Report = Callable[[tuple[str | int, ...], str], None]


@dataclass(frozen=True)
class _Names:
    """What templates of one tool may refer to."""

    arguments: set[str]
    principal: set[str]


def _check_refs(value: Any, loc: tuple[str | int, ...], names: _Names, report: Report) -> None:
    try:
        compiled = compile_value(value)
    except TemplateSyntaxError as exc:
        report(loc, str(exc))
        return
    for ref in value_refs(compiled):
        _check_ref(ref, loc, names, report)


def _check_ref(ref: Ref, loc: tuple[str | int, ...], names: _Names, report: Report) -> None:
    if ref.source == "arg" and ref.name not in names.arguments:
        report(loc, f"{loc[-1]} names undeclared argument {{{ref.name}}}")
    elif ref.source == "principal" and ref.name not in names.principal:
        known = ", ".join(sorted(names.principal))
        report(loc, f"{{principal.{ref.name}}}: the principal has only {known}")


def _check_request(request: RequestSpec, loc: tuple[str | int, ...], tool: ToolSpec,
                   names: _Names, report: Report) -> None:
    try:
        path = compile_path(request.path)
    except (ValueError, TemplateSyntaxError) as exc:
        report((*loc, "path"), str(exc))
        path = ()
    for part in path:
        if part.ref is None:
            continue
        if part.ref.source != "arg":
            _check_ref(part.ref, (*loc, "path"), names, report)
            continue
        name = part.ref.name
        if name not in names.arguments:
            report((*loc, "path"), f"path names undeclared argument {{{name}}}")
        elif name in tool.lookups and loc[0] == "lookups":
            report((*loc, "path"), f"a lookup's path cannot need a looked-up value {{{name}}}")
        elif name in tool.lookups or loc[0] == "lookups":
            # Filled by a lookup (absent only when it could not run), or the path of a lookup,
            # which runs only when every argument it names was given.
            continue
        elif not (tool.input[name].required is True
                  or "default" in tool.input[name].model_fields_set):
            report((*loc, "path"), f"path argument {{{name}}} must be required or have a default")
    for key in ("query", "body", "headers"):
        _check_refs(getattr(request, key), (*loc, key), names, report)
