"""`mcp-gateway serve` and `mcp-gateway sandbox`: the long-running commands. Off the request path.

Each binds its port before building anything, prints one line saying where it listens, and then
runs until SIGINT or SIGTERM. A configuration that cannot work (the port, Redis, the audit file)
is one line on stderr and exit code 2, whether `serve` runs one process or several.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Final

import structlog
from aiohttp import web
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from gateway import __version__
from gateway.errors import StartupError
from gateway.logs import configure_logging
from gateway.native import rows, use_native
from gateway.server.app import create_app, tune_collector
from gateway.server.connections import connection_bound, serve_until_stopped
from gateway.server.console import cannot_listen, load_or_report, refuse
from gateway.server.hosts import is_loopback_bind
from gateway.server.listen import base_url, bound_port, listen
from gateway.server.loops import loop_factory
from gateway.server.workers import run_workers, stop_when_orphaned
from gateway.settings import Settings
from gateway.spec.compiled import Registry
from gateway.telemetry.metrics import enable_multiprocess, forget_worker

DRAIN_S: Final = 10.0
"""How long a stopping server lets the calls in flight finish before it cancels them."""
CLEANUP_S: Final = 5.0
"""Time for a worker to close its edges after the drain (upstream pool, Redis, audit file);
past DRAIN_S + CLEANUP_S its parent kills it."""


def run_serve(args: argparse.Namespace) -> int:
    given = {"specs_dir": args.specs, "host": args.host, "port": args.port,
             "workers": args.workers}
    for unknown in unknown_variables(os.environ):
        print(f"mcp-gateway serve: warning: {unknown} is not a setting (ignored)",
              file=sys.stderr)
    try:
        settings = Settings(**{key: value for key, value in given.items() if value is not None})
    except ValidationError as exc:
        for error in exc.errors():  # every invalid setting, one line each
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"mcp-gateway serve: {where} (GATEWAY_{where.upper()}): {error['msg']}",
                  file=sys.stderr)
        return 2
    except SettingsError as exc:  # a value that is not even the JSON a list setting needs
        return refuse("serve", " ".join(str(exc).split()))
    if not (settings.public_url or settings.loopback_only or is_loopback_bind(settings.host)):
        return refuse("serve", f"listening on {settings.host} needs GATEWAY_PUBLIC_URL (the URL "
                               "clients use: token audiences and discovery documents name it), "
                               "or GATEWAY_LOOPBACK_ONLY=true for a deployment reached only "
                               "through loopback")
    configure_logging(settings)
    use_native(settings.native_rows)  # before any spec is compiled; logged once serving
    registry = load_or_report(settings.specs_dir)
    if registry is None:
        return 2
    if settings.workers > 1 and settings.port == 0:
        # Each worker binds on its own: with port 0 each would get a different one.
        return refuse("serve", "--workers needs a fixed port, not 0")
    try:
        sockets = listen(settings.host, settings.port, reuse_port=settings.workers > 1)
    except OSError as exc:
        return cannot_listen("serve", settings.host, settings.port, exc)
    print(serve_line(settings.host, bound_port(sockets), registry, settings.workers), flush=True)
    if settings.workers > 1:
        for sock in sockets:  # that was only a check: each worker binds the port itself
            sock.close()
        return _serve_workers(settings, registry)
    try:
        _serve_app(settings, registry, sockets)
    except StartupError as exc:
        return refuse("serve", str(exc))
    return 0


def serve_line(host: str, port: int, registry: Registry, workers: int = 1) -> str:
    """The one line `serve` prints once it listens."""
    services = ", ".join(f"{s.name} {s.spec.endpoint} ({len(s.tools)} tools)"
                         for s in (*registry.services, *registry.views))
    processes = f" ({workers} workers)" if workers > 1 else ""
    return f"mcp-gateway {__version__} on {base_url(host, port)}{processes}: {services}"


def _serve_workers(settings: Settings, registry: Registry) -> int:
    if not settings.secret_key.get_secret_value():
        # Workers must agree on pseudonyms and confirmation tokens: one random key for all.
        settings = settings.model_copy(update={"secret_key": SecretStr(secrets.token_hex(32))})
    if settings.redis_url is None:
        structlog.get_logger("gateway").warning(
            "workers_without_redis", workers=settings.workers,
            detail="write limits and single-use confirmations hold per worker; set "
                   "GATEWAY_REDIS_URL to share them")
    parent = os.getpid()

    def worker(ready: Callable[[], None]) -> None:
        try:
            sockets = listen(settings.host, settings.port, reuse_port=True)
        except OSError as exc:
            raise StartupError(_listen_problem(settings.host, settings.port, exc)) from None
        _serve_app(settings, registry, sockets, worker_of=parent, ready=ready)

    # Each worker writes its metrics to files here, summed by whichever answers /metrics.
    metrics_folder = tempfile.mkdtemp(prefix="mcp-gateway-metrics-")
    enable_multiprocess(metrics_folder)
    try:
        ended = run_workers(settings.workers, worker, stop_within_s=DRAIN_S + CLEANUP_S,
                            on_exit=forget_worker)
    finally:
        shutil.rmtree(metrics_folder, ignore_errors=True)
    if ended.reason:  # the parent speaks for its workers: one line, however many failed
        print(f"mcp-gateway serve: {ended.reason}", file=sys.stderr)
    return ended.code


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    """What `cannot_listen` says, for a worker to report to its parent."""
    reason = (exc.strerror or str(exc)).lower()
    return f"cannot listen on {base_url(host, port).removeprefix('http://')}: {reason}"


def _serve_app(settings: Settings, registry: Registry, sockets: list[socket.socket], *,
               worker_of: int | None = None, ready: Callable[[], None] | None = None) -> None:
    """Serve until stopped; a worker (of the process `worker_of`) says when its app has
    started, through `ready`.

    Raises:
        StartupError: the configuration cannot work (Redis, the audit file).
    """
    app = create_app(settings, registry, reloadable=True)
    app.on_startup.append(tune_collector)
    if worker_of is not None:
        app.cleanup_ctx.append(stop_when_orphaned(worker_of))
    if ready is not None:
        async def started(_app: web.Application) -> None:  # after the edges opened
            ready()

        app.on_startup.append(started)
    factory, loop_name = loop_factory(settings.event_loop)
    structlog.get_logger("gateway").info("row_loops", loops="c" if rows() else "python")
    structlog.get_logger("gateway").info("event_loop", loop=loop_name)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_until_stopped(
            app, sockets, access_log=settings.access_log, fast_lane=settings.fast_lane,
            shutdown_timeout_s=DRAIN_S,
            max_connections=connection_bound(settings.max_connections)))


def unknown_variables(environment: Mapping[str, str]) -> list[str]:
    """GATEWAY_* variables that name no setting (a typo would otherwise be silently ignored)."""
    known = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    return sorted(name for name in environment
                  if name.upper().startswith("GATEWAY_") and name.upper() not in known)


def run_sandbox(args: argparse.Namespace) -> int:
    from sandbox import create_sandbox_app

    try:
        sockets = listen(args.host, args.port)
    except OSError as exc:
        return cannot_listen("sandbox", args.host, args.port, exc)
    url = base_url(args.host, bound_port(sockets))
    app = create_sandbox_app(public_url=url)
    print(f"sandbox upstream on {url}", flush=True)
    web.run_app(app, sock=sockets, print=None, access_log=None)
    return 0
