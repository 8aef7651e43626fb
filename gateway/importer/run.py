"""`mcp-gateway import-openapi`: read the document, map every operation, check every tool the
way the loader will, write the folder, and report. Each tool is compiled here with the
gateway's own compiler, so the folder passes `mcp-gateway check` as it is written; a tool the
compiler refuses is reported as a skip with its reason, never written.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.importer.arguments import input_block
from gateway.importer.naming import tool_name
from gateway.importer.operations import Mapper, Operation, Tool, operations
from gateway.importer.parameters import Argument, Skip
from gateway.importer.refs import Document
from gateway.importer.report import Entry, Generated, Report
from gateway.importer.schemas import Converter
from gateway.importer.service import SCOPE, ServicePlan, plan_service, service_yaml
from gateway.importer.source import SourceError, dialect, read_source
from gateway.importer.swagger import lift
from gateway.importer.writer import service_file, tool_file, write_folder
from gateway.spec.checks import check_declarations, check_references
from gateway.spec.compiler import compile_tool
from gateway.spec.models import ServiceSpec
from gateway.spec.source import one_line
from gateway.spec.tools import ToolSpec

SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
"""ServiceSpec's name pattern, checked before anything is read."""


@dataclass(frozen=True)
class Options:
    source: str
    service: str
    out: Path
    include_tags: Sequence[str] = ()
    exclude: Sequence[str] = ()
    """Shell-style patterns matched against each operation's operationId, its tool name and
    `METHOD /path`."""


def command(options: Options) -> int:
    """The command: the report on stdout and exit 0, or one line on stderr and exit 2 when the
    document cannot be read or the arguments cannot be used."""
    problem = _usage_problem(options)
    if problem is None:
        try:
            report = import_openapi(options)
        except SourceError as exc:
            problem = str(exc)
        except OSError as exc:
            problem = f"{exc.filename or options.out}: cannot write: {exc.strerror or exc}"
        else:
            print(report.render())
            return 0
    print(f"mcp-gateway import-openapi: {problem}", file=sys.stderr)
    return 2


def _usage_problem(options: Options) -> str | None:
    if not SERVICE_NAME.match(options.service):
        return (f"--service {options.service!r}: a service name is lower-case letters, digits "
                "and '-', starting with a letter, at most 40 characters")
    if options.out.exists() and (not options.out.is_dir() or any(options.out.iterdir())):
        return f"--out {options.out}: exists and is not an empty folder; choose a new one"
    return None


def import_openapi(options: Options) -> Report:
    """Import the document into `options.out`.

    Raises:
        SourceError: the document cannot be read or is not OpenAPI 3.x / Swagger 2.0.
        OSError: the folder cannot be written.
    """
    document, version = read_source(options.source)
    root = lift(document) if version == "2.0" else document
    refs = Document(root)
    plan = plan_service(refs, options.service, options.source)
    report = Report(options.source, version, str(options.out), notes=plan.notes)
    requests, responses = Converter(refs, "request"), Converter(refs, "response")
    mapper = Mapper(refs, requests, responses, plan.base_url)
    checker = ServiceSpec.model_validate({"name": options.service, "title": "check",
                                          "endpoint": "/check", "upstream": {
                                              "base_url": plan.base_url}})
    tools: list[Tool] = []
    found = operations(refs)
    report.found = len(found)
    for operation in found:
        try:
            _filter(operation, options)
            tool = mapper.tool(operation)
            _fit(tool, checker)
        except Skip as exc:
            report.skipped.append(Entry(operation.label, str(exc)))
            continue
        tools.append(tool)
        report.unmapped += [Entry(operation.label, text, tool.spec["name"])
                            for text in tool.unmapped]
    report.notes += _document_notes(root, refs, requests, responses)
    write_folder(options.out, _files(options, version, root, plan, tools))
    report.generated = [Generated(t.spec["name"], t.spec["kind"], t.operation.label,
                                  f"{t.file}.yaml") for t in tools]
    return report


def _filter(operation: Operation, options: Options) -> None:
    """Raises: Skip when --include-tags or --exclude leave the operation out."""
    wanted = {t.lower() for t in options.include_tags}
    if wanted and not wanted & {t.lower() for t in operation.tags}:
        raise Skip("its tags are not among --include-tags" if operation.tags
                   else "it has no tag, and --include-tags is given")
    op_id = operation.op.get("operationId")
    names = [operation.label, tool_name(op_id, operation.method, operation.path)]
    if isinstance(op_id, str):
        names.append(op_id)
    for pattern in options.exclude:
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise Skip(f"--exclude {pattern}")


def _fit(tool: Tool, checker: ServiceSpec) -> None:
    """Keep the tool's scopes the format can name, and compile it as the loader will: in the
    short `input:` form, else as a full input_schema.

    Raises:
        Skip: with the compiler's reason when neither compiles.
    """
    scopes = tool.spec.get("scopes") or []
    tool.unmapped += [f"scope {s!r} cannot be named in the spec format: not required"
                      for s in scopes if not SCOPE.match(s)]
    if scopes:
        tool.spec["scopes"] = [s for s in scopes if SCOPE.match(s)] or None
    problem = _compile_problem(tool.spec, checker)
    if problem is not None and "input" in tool.spec and tool.inputs is not None:
        tool.spec = _with_schema(tool.spec, tool.inputs.arguments)
        problem = _compile_problem(tool.spec, checker)
    if problem is not None:
        raise Skip(f"the generated tool does not load: {problem}")
    tool.spec = {k: v for k, v in tool.spec.items() if v is not None}


def _with_schema(spec: dict[str, Any], arguments: list[Argument]) -> dict[str, Any]:
    block, schema = input_block(arguments, short=False)
    return {(block if k == "input" else k): (schema if k == "input" else v)
            for k, v in spec.items()}


def _compile_problem(spec: dict[str, Any], service: ServiceSpec) -> str | None:
    try:
        tool = ToolSpec.model_validate({k: v for k, v in spec.items() if v is not None})
        problems = check_declarations(tool, service)
        if not problems:
            problems = check_references(compile_tool(tool, service), service)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    except ValueError as exc:  # the compiler's problems (templates, JMESPath, schemas)
        return one_line(exc)
    if problems:
        loc, message = problems[0]
        return f"{'.'.join(map(str, loc))}: {message}"
    return None


def _document_notes(root: dict[str, Any], refs: Document, *converters: Converter) -> list[str]:
    notes = []
    callbacks = sum(len(op.get("callbacks") or {}) for item in (root.get("paths") or {}).values()
                    if isinstance(item, dict) for op in item.values() if isinstance(op, dict))
    hooks = len(root.get("webhooks") or {}) + callbacks
    if hooks:
        notes.append(f"{hooks} webhook(s) and callback(s): requests the API makes, not "
                     "operations a tool can call; not imported")
    notes += [f"$ref {ref} is not resolved: taken as any value" for ref in sorted(refs.unresolved)]
    notes += list(dict.fromkeys(n for c in converters for n in c.notes))
    return notes


def _files(options: Options, version: str, root: dict[str, Any], plan: ServicePlan,
           tools: list[Tool]) -> dict[str, str]:
    scopes = dict(plan.scopes)
    for tool in tools:
        scopes.update((s, "") for s in tool.spec.get("scopes") or [] if s not in scopes)
    anonymous = [t.spec["name"] for t in tools if t.anonymous]
    spec = service_yaml(plan, root, scopes, anonymous)
    files = {"service.yaml": service_file(_service_header(options, version, plan), spec)}
    by_file: dict[str, list[dict[str, Any]]] = {}
    for tool in tools:
        by_file.setdefault(tool.file, []).append(tool.spec)
    tags = {t.file: t.operation.tags[0] for t in tools if t.operation.tags}
    for name, specs in sorted(by_file.items()):
        about = f"tagged {tags[name]!r}" if name in tags else "without a tag"
        header = [f"The operations {about} of {spec['title']} ({dialect(version)})."]
        files[f"{name}.yaml"] = tool_file(header, specs)
    return files


def _service_header(options: Options, version: str, plan: ServicePlan) -> list[str]:
    lines = [f"Imported from {options.source} ({dialect(version)}) by `mcp-gateway "
             "import-openapi`; check it with `mcp-gateway check`.",
             f"{plan.variable} points the service at another address than the document's "
             f"({plan.base_url})."]
    credential = plan.credential or {}
    if credential.get("format", "").startswith("${"):
        lines.append(f"The caller's token goes in the {credential['header']} header as "
                     f"${{{plan.prefix_variable}}}<token>: set {plan.prefix_variable} when the "
                     "API wants text before the key (`api_key=`, say); unset, the key is sent "
                     "alone.")
    return lines
