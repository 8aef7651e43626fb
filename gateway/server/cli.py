"""`mcp-gateway serve | check | test | tools | schema | docs | audit | sandbox | demo |
import-openapi`: the command line.
Off the request path: it may import anything in the gateway, and nothing on the request path
imports it. The long-running commands live in `serve` and `demo`; this module parses arguments,
runs the short commands, and turns the ways a command line ends (a closed pipe, Ctrl+C) into
exit codes instead of tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.importer.run import Options
from gateway.importer.run import command as import_command
from gateway.logs import configure_logging
from gateway.server.case_runner import case_settings, find_cases, run_cases, selected_tools
from gateway.server.catalog_docs import page_name, render_page, splice
from gateway.server.console import load_or_report, refuse
from gateway.server.demo import run_demo
from gateway.server.serve import run_sandbox, run_serve
from gateway.server.settings_docs import BEGIN as SETTINGS_BEGIN
from gateway.server.settings_docs import END as SETTINGS_END
from gateway.server.settings_docs import settings_table
from gateway.settings import SHIPPED_SPECS, Settings
from gateway.spec.models import ServiceSpec
from gateway.spec.tools import SpecFile
from gateway.writes.audit import verify as verify_chain

CLOSED_PIPE = 128 + signal.SIGPIPE
"""What a shell reports for a command stopped by a closed pipe (`... | head -1`)."""
INTERRUPTED = 128 + signal.SIGINT


OPERATIONS_PAGE = "operations.md"
"""The page whose settings table `docs` writes."""

def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
        sys.stdout.flush()  # here, so a closed pipe is seen now rather than at exit
    except BrokenPipeError:
        # The reader is gone: send what is still buffered nowhere, and say nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = CLOSED_PIPE
    except KeyboardInterrupt:
        code = INTERRUPTED
    sys.exit(code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-gateway",
                                     description="A stateless MCP gateway for REST APIs.")
    parser.add_argument("--version", action="version", version=f"mcp-gateway {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the MCP endpoints of a spec tree")
    serve.add_argument("--specs", type=Path, default=None,
                       help="folder of service folders (default: the shipped tool_specs/)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=None,
                       help="serving processes sharing the port (default 1; one per core)")
    serve.set_defaults(run=run_serve)

    check = commands.add_parser("check", help="validate a spec tree; print every problem")
    check.add_argument("dir", nargs="?", type=Path, default=SHIPPED_SPECS)
    check.set_defaults(run=run_check)

    add_test_command(commands)

    tools = commands.add_parser("tools", help="list the services and tools of a spec tree")
    tools.add_argument("dir", nargs="?", type=Path, default=SHIPPED_SPECS)
    tools.set_defaults(run=run_tools)

    schema = commands.add_parser("schema", help="print the JSON Schema of the spec format")
    schema.set_defaults(run=run_schema)

    docs = commands.add_parser("docs", help="write each service's catalog (tools, scopes, "
                               "resources, prompts) into its Markdown page")
    docs.add_argument("dir", nargs="?", type=Path, default=SHIPPED_SPECS)
    docs.add_argument("--out", type=Path, default=Path("docs"),
                      help="folder of the pages, one <service>.md each (default: docs)")
    docs.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 naming each page that differs from the specs")
    docs.set_defaults(run=run_docs)

    audit = commands.add_parser("audit", help="work with audit logs")
    audit_commands = audit.add_subparsers(required=True, metavar="ACTION")
    verify = audit_commands.add_parser(
        "verify", help="check audit log files (oldest first, as one chain) under the audit key")
    verify.add_argument("files", nargs="+", type=Path, metavar="FILE")
    verify.add_argument("--key-file", type=Path, default=None,
                        help="file holding the audit key (default: GATEWAY_AUDIT_KEY)")
    verify.set_defaults(run=run_audit_verify)

    sandbox = commands.add_parser("sandbox", help="serve the sandbox upstream alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8081)
    sandbox.set_defaults(run=run_sandbox)

    demo = commands.add_parser("demo", help="the gateway in front of the sandbox, with tokens")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--sandbox-port", type=int, default=8081)
    demo.add_argument("--with-conformance", action="store_true",
                      help="also serve the conformance fixtures at /conformance/mcp")
    demo.set_defaults(run=run_demo)
    _add_import_openapi(commands)
    return parser


def _add_import_openapi(commands: Any) -> None:
    command = commands.add_parser(
        "import-openapi", help="write a service folder of tools from an OpenAPI 3.x or "
        "Swagger 2.0 document, and report what was mapped and what was not")
    command.add_argument("source", metavar="SOURCE", help="a file, or an http(s) URL")
    command.add_argument("--service", required=True, metavar="NAME",
                         help="the service's name (also its endpoint /NAME/mcp)")
    command.add_argument("--out", required=True, type=Path, metavar="DIR",
                         help="the service folder to write: new, or an empty folder")
    command.add_argument("--include-tags", nargs="+", action="extend", default=[],
                         metavar="TAG", help="only operations with one of these tags")
    command.add_argument("--exclude", nargs="+", action="extend", default=[],
                         metavar="PATTERN", help="leave out operations whose operationId, "
                         "tool name or 'METHOD /path' matches a shell-style pattern")
    command.set_defaults(run=run_import_openapi)


def run_import_openapi(args: argparse.Namespace) -> int:
    tags = [t for given in args.include_tags for t in given.split(",") if t.strip()]
    return import_command(Options(args.source, args.service, args.out,
                                  tuple(t.strip() for t in tags), tuple(args.exclude)))


def run_check(args: argparse.Namespace) -> int:
    registry = load_or_report(args.dir)
    if registry is None:
        return 1
    tools = sum(len(s.tools) for s in registry.services)
    print(f"ok: {len(registry.services)} service(s), {tools} tool(s) in {args.dir}")
    return 0


def add_test_command(commands: Any) -> None:
    test = commands.add_parser("test", help="run the test cases of a spec tree's tools, "
                               "offline; print each failing case")
    test.add_argument("dir", nargs="?", type=Path, default=SHIPPED_SPECS)
    test.add_argument("--service", action="append", default=[], metavar="NAME",
                      help="only this service's tools (may be given more than once)")
    test.add_argument("--tool", action="append", default=[], metavar="NAME",
                      help="only this tool (may be given more than once)")
    test.set_defaults(run=run_test)


def run_test(args: argparse.Namespace) -> int:
    """Exit 0 when every selected case passes, 1 when one fails, 2 when the tree does not load
    or a --service / --tool names nothing in it."""
    registry = load_or_report(args.dir)
    if registry is None:
        return 2
    known = {s.name for s in registry.services}
    names = {t for s in registry.services if not args.service or s.name in args.service
             for t in s.tools}
    unknown = [f"service {n!r}" for n in args.service if n not in known] + [
        f"tool {n!r}" for n in args.tool if n not in names]
    if unknown:
        return refuse("test", f"no {', no '.join(unknown)} in {args.dir}")
    settings = case_settings()
    configure_logging(settings.model_copy(update={"log_level": "error", "log_json": True}))
    chosen = selected_tools(registry, services=args.service, tools=args.tool)
    cases = find_cases(registry, services=args.service, tools=args.tool)
    started = time.perf_counter()
    results = asyncio.run(run_cases(registry, cases, settings))
    failed = [result for result in results if not result.passed]
    for result in failed:
        print(result)
    untested = sum(1 for _, tool in chosen if not tool.spec.tests)
    print(f"{len(results)} case(s) of {len(chosen) - untested} tool(s): {len(failed)} failed"
          + (f", {untested} tool(s) untested" if untested else "")
          + f" in {time.perf_counter() - started:.1f}s")
    return 1 if failed else 0


def run_tools(args: argparse.Namespace) -> int:
    registry = load_or_report(args.dir)
    if registry is None:
        return 1
    for service in registry.services:
        print(f"{service.name}  {service.spec.endpoint}  ({len(service.tools)} tools)")
        for tool in service.tools.values():
            scopes = ",".join(sorted(tool.scopes)) or "-"
            print(f"  {tool.name:<32} {tool.spec.kind:<5} {scopes}")
    return 0


def spec_json_schema() -> dict[str, Any]:
    """One JSON Schema for every file of a service folder (service.yaml or a tools file)."""
    _, top = models_json_schema([(ServiceSpec, "validation"), (SpecFile, "validation")],
                                title="mcp-gateway spec file, version 1")
    top["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    top["anyOf"] = [{"$ref": "#/$defs/ServiceSpec"}, {"$ref": "#/$defs/SpecFile"}]
    return top


def run_schema(_args: argparse.Namespace) -> int:
    print(json.dumps(spec_json_schema(), indent=2))
    return 0


def run_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every record is authentic under the audit key, follows the one before, and
    the chain ends where the head beside the last file says; 1 at the first break; 2 when a file
    or the key cannot be read; 3 when nothing was found wrong but not everything could be
    checked (without a key only the structure is; without a head, not the end)."""
    try:
        key = _audit_key(args.key_file)
    except (OSError, ValueError) as exc:
        print(f"mcp-gateway audit verify: {exc}", file=sys.stderr)
        return 2
    files: list[Path] = args.files
    head_path = files[-1].with_name(files[-1].name + ".head")
    try:
        with ExitStack() as stack:
            opened = [stack.enter_context(f.open(encoding="utf-8", errors="replace"))
                      for f in files]
            head = head_path.read_bytes() if head_path.exists() else None
            identities = [_identity(os.fstat(f.fileno())) for f in opened]
            verdict = verify_chain(opened, key, head, identities)
    except OSError as exc:
        print(f"{exc.filename}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    label = ", ".join(map(str, files))
    broken = verdict.broken
    if broken is not None:
        where = f"{files[broken.file]}:{broken.line}" if broken.file is not None else head_path
        print(f"{where}: chain broken: {broken.what}", file=sys.stderr)
        return 1
    for note in verdict.notes:
        print(f"{label}: {note}")
    if verdict.unchecked:
        print(f"{label}: {verdict.records} record(s), nothing found wrong, not fully checked")
        for unchecked in verdict.unchecked:
            print(f"{label}: not checked: {unchecked}", file=sys.stderr)
        return 3
    print(f"{label}: {verdict.records} record(s), chain intact")
    return 0


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _audit_key(key_file: Path | None) -> bytes | None:
    """The audit key: the contents of `key_file` (a trailing newline dropped), else
    GATEWAY_AUDIT_KEY; None when neither is set.

    Raises:
        OSError: the key file cannot be read.
        ValueError: the key file is empty, or the environment's settings are invalid.
    """
    if key_file is not None:
        key = key_file.read_bytes().removesuffix(b"\n").removesuffix(b"\r")
        if not key:
            raise ValueError(f"{key_file}: the key file is empty")
        return key
    try:
        configured = Settings().audit_key.get_secret_value()
    except ValidationError as exc:
        raise ValueError(f"the settings in the environment are invalid: {exc}") from exc
    return configured.encode() or None


def run_docs(args: argparse.Namespace) -> int:
    """Write (or with --check, compare) the catalog section of each service's page."""
    registry = load_or_report(args.dir)
    if registry is None:
        return 1
    drifted = 0
    pages: list[tuple[Path, Callable[[str | None], str]]] = [
        (args.out / page_name(service), functools.partial(render_page, service=service))
        for service in registry.services]
    if (args.out / OPERATIONS_PAGE).is_file():  # its settings table, from the Settings model
        pages.append((args.out / OPERATIONS_PAGE, lambda page: splice(
            page or "", SETTINGS_BEGIN, SETTINGS_END, settings_table())))
    for path, render in pages:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        try:
            wanted = render(current)
        except ValueError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
        if wanted == current:
            continue
        drifted += 1
        if args.check:
            print(f"{path}: differs from the specs; run `mcp-gateway docs` to update it",
                  file=sys.stderr)
            print(_diff(current or "", wanted, path), file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and drifted:
        return 1
    print(f"ok: {len(pages)} page(s) in {args.out} match the specs" if args.check
          or not drifted else f"{drifted} of {len(pages)} page(s) updated in {args.out}")
    return 0


def _diff(current: str, wanted: str, path: Path, most: int = 40) -> str:
    lines = list(difflib.unified_diff(current.splitlines(), wanted.splitlines(),
                                      f"{path} (checked in)", f"{path} (from the specs)",
                                      lineterm="", n=1))
    more = f"\n... {len(lines) - most} more diff line(s)" if len(lines) > most else ""
    return "\n".join(lines[:most]) + more
