"""`mcp-gateway demo`: the gateway in front of the sandbox upstream in one process, with the demo
tokens and connect commands printed. Off the request path.

Both ports are bound first (port 0 picks a free one), so the sandbox's real address is known
before the spec tree that points at it is loaded. SIGINT and SIGTERM stop both servers cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket

from aiohttp import web

from gateway import __version__
from gateway.logs import configure_logging
from gateway.native import use_native
from gateway.server.app import create_app
from gateway.server.connections import connection_bound, start_serving
from gateway.server.console import cannot_listen, load_or_report
from gateway.server.listen import base_url, bound_port, listen
from gateway.settings import Settings
from gateway.spec.compiled import Registry

DEMO_UPSTREAM_VARIABLES = ("RETENTLY_API_URL", "REFINER_API_URL", "REFINER_AUTH_URL")
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
"""The Inspector release the Makefile installs into .node/ (`make node`)."""


def run_demo(args: argparse.Namespace) -> int:
    bound: list[list[socket.socket]] = []
    for port in (args.sandbox_port, args.port):
        try:
            bound.append(listen(args.host, port))
        except OSError as exc:
            for sockets in bound:
                for sock in sockets:
                    sock.close()
            return cannot_listen("demo", args.host, port, exc)
    sandbox_sockets, gateway_sockets = bound
    sandbox_url = base_url(args.host, bound_port(sandbox_sockets))
    for variable in DEMO_UPSTREAM_VARIABLES:
        os.environ[variable] = sandbox_url
    if args.with_conformance:
        os.environ["MCP_GATEWAY_CONFORMANCE"] = "true"
        os.environ["CONFORMANCE_UPSTREAM_URL"] = sandbox_url
    return asyncio.run(_demo(args.host, sandbox_sockets, gateway_sockets))


async def _demo(host: str, sandbox_sockets: list[socket.socket],
                gateway_sockets: list[socket.socket]) -> int:
    from sandbox import DEMO_TOKENS, create_sandbox_app

    sandbox_url = base_url(host, bound_port(sandbox_sockets))
    port = bound_port(gateway_sockets)
    # A loopback-only deployment: clients may say localhost or 127.0.0.1, and each is answered
    # as the URL it used (an OAuth client checks that the metadata names the URL it called).
    # The demo reloads the specs when they change, unless told otherwise.
    settings = Settings(host=host, port=port, log_json=True,
                        root_service="refiner", loopback_only=True)
    if "GATEWAY_SPECS_WATCH" not in os.environ:
        settings = settings.model_copy(update={"specs_watch": True})
    configure_logging(settings)
    use_native(settings.native_rows)  # before any spec is compiled, as serve does
    registry = load_or_report(settings.specs_dir)
    if registry is None:
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sandbox = web.AppRunner(create_sandbox_app(public_url=sandbox_url), access_log=None)
    await sandbox.setup()
    try:
        for sock in sandbox_sockets:
            await web.SockSite(sandbox, sock).start()
        gateway = await start_serving(  # as `serve` serves it
            create_app(settings, registry, reloadable=True), gateway_sockets,
            max_connections=connection_bound(settings.max_connections), access_log=False,
            fast_lane=settings.fast_lane)
        try:
            print(demo_banner(host, port, sandbox_url, registry, DEMO_TOKENS), flush=True)
            await stop.wait()
        finally:
            await gateway.stop()
    finally:
        await sandbox.cleanup()
    return 0


def demo_banner(host: str, port: int, sandbox_url: str, registry: Registry,
                tokens: dict[str, str]) -> str:
    base = base_url(host, port)
    lines = [f"mcp-gateway {__version__} demo: gateway on {base}, "
             f"sandbox upstream on {sandbox_url}", ""]
    lines += [f"  {s.spec.title:<10} {base}{s.spec.endpoint}  ({len(s.tools)} tools)"
              for s in (*registry.services, *registry.views)]
    lines += ["", "Demo tokens:"]
    lines += [f"  {token:<34} {what}" for token, what in tokens.items()]
    retently = f"{base}/retently/mcp"
    lines += [
        "",
        "Connect:",
        f"  claude mcp add --transport http retently {retently} \\",
        '      --header "Authorization: Bearer rtly_mcp_pat_demoadmin_s3cr3t"',
        f"  npx {INSPECTOR} --cli {retently} --transport http \\",
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
