"""`mcp-gateway serve | check | tools | schema | sandbox | demo`: the command line. Off the request
path: it may import anything in the gateway, and nothing on the request path imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.log import access_logger
from pydantic import SecretStr, ValidationError
from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.errors import SpecError
from gateway.logs import configure_logging
from gateway.server.app import create_app, tune_collector
from gateway.server.workers import run_workers, stop_when_orphaned
from gateway.settings import SHIPPED_SPECS, Settings, spec_environment
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree
from gateway.spec.models import ServiceSpec
from gateway.spec.tools import SpecFile
from gateway.writes.audit import verify as verify_chain

DEMO_UPSTREAM_VARIABLES = ("RETENTLY_API_URL", "REFINER_API_URL", "REFINER_AUTH_URL")


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    code = args.run(args)
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

    tools = commands.add_parser("tools", help="list the services and tools of a spec tree")
    tools.add_argument("dir", nargs="?", type=Path, default=SHIPPED_SPECS)
    tools.set_defaults(run=run_tools)

    schema = commands.add_parser("schema", help="print the JSON Schema of the spec format")
    schema.set_defaults(run=run_schema)

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
    return parser


def _load(folder: Path) -> Registry | None:
    try:
        return load_tree(folder, spec_environment())
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {folder}", file=sys.stderr)
        return None


def run_check(args: argparse.Namespace) -> int:
    registry = _load(args.dir)
    if registry is None:
        return 1
    tools = sum(len(s.tools) for s in registry.services)
    print(f"ok: {len(registry.services)} service(s), {tools} tool(s) in {args.dir}")
    return 0


def run_tools(args: argparse.Namespace) -> int:
    registry = _load(args.dir)
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


def run_serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.specs is not None:
        overrides["specs_dir"] = args.specs
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.workers is not None:
        overrides["workers"] = args.workers
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"mcp-gateway serve: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}",
              file=sys.stderr)
        return 2
    configure_logging(settings)
    registry = _load(settings.specs_dir)
    if registry is None:
        return 2
    if settings.workers == 1:
        _serve_app(settings, registry)
        return 0
    if settings.port == 0:
        # Each worker binds on its own: with port 0 each would get a different one.
        print("mcp-gateway serve: --workers needs a fixed port, not 0", file=sys.stderr)
        return 2
    if not settings.secret_key.get_secret_value():
        # Workers must agree on pseudonyms and confirmation tokens: one random key for all.
        settings = settings.model_copy(update={"secret_key": SecretStr(secrets.token_hex(32))})
    if settings.redis_url is None:
        structlog.get_logger("gateway").warning(
            "workers_without_redis", workers=settings.workers,
            detail="write limits and single-use confirmations hold per worker; set "
                   "GATEWAY_REDIS_URL to share them")
    parent = os.getpid()
    return run_workers(settings.workers,
                       lambda: _serve_app(settings, registry, worker_of=parent))


def _serve_app(settings: Settings, registry: Registry, *, worker_of: int | None = None) -> None:
    app = create_app(settings, registry)
    app.on_startup.append(tune_collector)
    reuse_port = worker_of is not None
    if worker_of is not None:
        app.cleanup_ctx.append(stop_when_orphaned(worker_of))
    web.run_app(app, host=settings.host, port=settings.port, print=None, reuse_port=reuse_port,
                access_log_format='%a "%r" %s %b %Tf' if settings.access_log else "",
                access_log=access_logger if settings.access_log else None)


def run_sandbox(args: argparse.Namespace) -> int:
    from sandbox import create_sandbox_app

    app = create_sandbox_app(public_url=f"http://{args.host}:{args.port}")
    print(f"sandbox upstream on http://{args.host}:{args.port}", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args.host, args.port, args.sandbox_port, args.with_conformance))


async def _demo(host: str, port: int, sandbox_port: int, with_conformance: bool) -> int:
    from sandbox import DEMO_TOKENS, create_sandbox_app

    sandbox_url = f"http://{host}:{sandbox_port}"
    for variable in DEMO_UPSTREAM_VARIABLES:
        os.environ[variable] = sandbox_url
    if with_conformance:
        os.environ["MCP_GATEWAY_CONFORMANCE"] = "true"
        os.environ["CONFORMANCE_UPSTREAM_URL"] = sandbox_url
    settings = Settings(host=host, port=port, log_json=True, access_log=False,
                        root_service="refiner")
    configure_logging(settings)
    registry = _load(settings.specs_dir)
    if registry is None:
        return 2
    runners = []
    try:
        for app, app_port in ((create_sandbox_app(public_url=sandbox_url), sandbox_port),
                              (create_app(settings, registry), port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, app_port).start()
            runners.append(runner)
        print(demo_banner(host, port, sandbox_url, registry, DEMO_TOKENS), flush=True)
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
    return 0


def demo_banner(host: str, port: int, sandbox_url: str, registry: Registry,
                tokens: dict[str, str]) -> str:
    base = f"http://{host}:{port}"
    lines = [f"mcp-gateway {__version__} demo: gateway on {base}, "
             f"sandbox upstream on {sandbox_url}", ""]
    lines += [f"  {s.spec.title:<10} {base}{s.spec.endpoint}  ({len(s.tools)} tools)"
              for s in registry.services]
    lines += ["", "Demo tokens:"]
    lines += [f"  {token:<34} {what}" for token, what in tokens.items()]
    retently = f"{base}/retently/mcp"
    lines += [
        "",
        "Connect:",
        f"  claude mcp add --transport http retently {retently} \\",
        '      --header "Authorization: Bearer rtly_mcp_pat_demoadmin_s3cr3t"',
        f"  npx @modelcontextprotocol/inspector --cli {retently} --transport http \\",
        '      --header "Authorization: Bearer rtly_mcp_pat_demoadmin_s3cr3t" '
        "--method tools/list",
        f"  curl -s {retently} -H 'Content-Type: application/json' "
        "-H 'Accept: application/json, text/event-stream' \\",
        "      -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
        "\"params\":{\"name\":\"ping\",\"arguments\":{}}}'",
        "",
        "Press Ctrl+C to stop.",
    ]
    return "\n".join(lines)
