"""The listening edge: how the app is served (aiohttp's connection handler, made quiet, with the
fast lane in front: server/lane.py), and a bound on open connections. Used by `serve` and the
demo (and the end-to-end tests, which serve the gateway the same way); off the request path's
logic.

Slow clients are bounded by the app's `keepalive_timeout` (see create_app): a connection that
has not sent a complete request within it of opening (or of its last answer) is closed, so a
client trickling header bytes holds a connection for seconds, not forever. Past
`max_connections` a new connection is answered 503 and closed at once, so the process never
runs out of descriptors and the connections it has keep being served.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import socket
from collections.abc import Callable
from typing import Any, Final, cast

import orjson
import structlog
from aiohttp import web

from gateway.server.lane import lane_handler
from gateway.server.quiet import SERVER_NAME, AccessLog, QuietRequestHandler

log = structlog.get_logger("gateway.http")
_BUSY: Final = orjson.dumps({"error": "busy", "error_description":
                             "Too many open connections; retry shortly."})
BUSY_ANSWER: Final = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                      b"Retry-After: 1\r\nConnection: close\r\nServer: " + SERVER_NAME.encode()
                      + b"\r\nContent-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY)


class _Busy(asyncio.Protocol):
    """A connection over the bound: told so, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport writes, but uvloop's does not derive from
        # asyncio.WriteTransport: an isinstance check would drop the answer with the connection.
        cast(asyncio.WriteTransport, transport).write(BUSY_ANSWER)
        transport.close()


def protocol_factory(server: web.Server, max_connections: int,
                     lane_for: web.Application | None = None
                     ) -> Callable[[], asyncio.BaseProtocol]:
    """What accepts each connection: aiohttp's handler (the quiet one; with the fast lane in
    front of it when `lane_for` names the app), or a refusal when the bound is reached."""
    loop = asyncio.get_running_loop()
    # Connections accepted in one burst are registered with the server (connection_made) only
    # on the loop's next turn: count them until then, or a burst would pass the bound.
    accepting = 0

    def registered() -> None:
        nonlocal accepting
        accepting = 0

    def accept() -> asyncio.BaseProtocol:
        nonlocal accepting
        if len(server.connections) + accepting >= max_connections:
            log.warning("connection_refused", reason="max_connections", bound=max_connections)
            return _Busy()
        if accepting == 0:  # after this turn's connection_made callbacks have run
            loop.call_soon(loop.call_soon, registered)
        accepting += 1
        if lane_for is not None:
            return lane_handler(server, lane_for)
        handler = server()
        # The handler aiohttp builds, made quiet: the subclass adds no state, only behaviour.
        handler.__class__ = QuietRequestHandler
        return handler

    return accept


DESCRIPTOR_RESERVE: Final = 64
"""File descriptors kept for everything else: upstream connections, logs, the audit file."""


def connection_bound(configured: int) -> int:
    """The configured bound, lowered to what the process's descriptor limit allows."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(16, min(configured, soft // 2 - DESCRIPTOR_RESERVE))


async def set_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer names the product, not its libraries' versions."""
    response.headers["Server"] = SERVER_NAME


class Serving:
    """An app served on bound sockets, until `stop`."""

    def __init__(self, runner: web.AppRunner, listeners: list[asyncio.Server]) -> None:
        self.runner = runner
        self.listeners = listeners

    async def stop(self) -> None:
        """Stop accepting, let the requests in flight finish (up to the runner's shutdown
        timeout) and run the app's cleanup."""
        for listener in self.listeners:
            listener.close()
        await self.runner.cleanup()


async def start_serving(app: web.Application, sockets: list[socket.socket], *,
                        max_connections: int, access_log: bool, fast_lane: bool,
                        shutdown_timeout_s: float = 10.0) -> Serving:
    """Serve `app` on the bound sockets: its startup run, its connections accepted (through
    the fast lane, with `fast_lane`: the gateway's app only)."""
    options: dict[str, Any] = {"access_log_class": AccessLog} if access_log else {
        "access_log": None}
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout_s,
                           **options)
    await runner.setup()
    server = runner.server
    if server is None:
        raise RuntimeError("the app runner has no server after setup")
    accept = protocol_factory(server, max_connections, app if fast_lane else None)
    loop = asyncio.get_running_loop()
    return Serving(runner, [await loop.create_server(accept, sock=sock) for sock in sockets])


async def serve_until_stopped(app: web.Application, sockets: list[socket.socket], *,
                              max_connections: int, access_log: bool, fast_lane: bool = False,
                              shutdown_timeout_s: float = 10.0) -> None:
    """Serve `app` on the bound sockets until SIGINT or SIGTERM, then stop (Serving.stop)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # a stop asked during startup waits for it
        loop.add_signal_handler(signum, stop.set)
    serving = await start_serving(app, sockets, max_connections=max_connections,
                                  access_log=access_log, fast_lane=fast_lane,
                                  shutdown_timeout_s=shutdown_timeout_s)
    try:
        await stop.wait()
    finally:
        await serving.stop()
