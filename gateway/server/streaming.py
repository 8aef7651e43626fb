"""Progress over SSE, for tool calls that read many upstream pages.

A tools/call of a `collect` tool whose `params._meta` holds a progressToken, from a client that
accepts text/event-stream, is answered as one SSE stream: notifications/progress as the pages are
read, a comment line while they are slow to come, and the JSON-RPC response as the last event.
The stream opens at the call's first report, once every check has passed, so a refusal (400,
401, 403, 404) is still a plain JSON answer. Every other request is answered as before.

Closing the stream cancels the call, in both eras (MCP 2026-07-28 requires it; a 2025 client is
told nothing, but a stateless answer cannot be resumed, so whatever was read after it would be
thrown away): the page being read is abandoned and no other is requested.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web

from gateway.errors import StreamClosed
from gateway.logs import request_ids
from gateway.protocol.envelope import Inbound
from gateway.spec.compiled import CollectSource, CompiledService

EVENT_STREAM: Final = "text/event-stream"
KEEP_ALIVE: Final = b": keep-alive\n\n"
WATCH_S: Final = 0.1
"""How often a streaming call looks whether its client is still there. aiohttp tells a handler
nothing when its connection closes: a write would fail, but a wait for a page would not."""
CLIENT_CLOSED: Final = 499
"""The status logged for a call whose client left before its stream opened (nginx's code)."""

ProgressToken = str | int
T = TypeVar("T")


def progress_token(inbound: Inbound, service: CompiledService,
                   accept: str | None) -> ProgressToken | None:
    """The progressToken of a request to answer as a stream, or None for a plain JSON answer:
    only a tools/call of a tool that reads pages (`collect`), from a client that takes SSE."""
    if inbound.method != "tools/call":
        return None
    meta = inbound.params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    if not isinstance(token, ProgressToken) or isinstance(token, bool):
        return None
    name = inbound.params.get("name")
    tool = service.tools.get(name) if isinstance(name, str) else None
    if tool is None or not isinstance(tool.source, CollectSource) or not takes_events(accept):
        return None
    return token


def takes_events(accept: str | None) -> bool:
    """Whether an Accept header lists SSE (a client that sends none gets JSON)."""
    return accept is not None and bool(media_types(accept) & {EVENT_STREAM, "text/*", "*/*"})


@functools.lru_cache(maxsize=256)  # a client sends the same Accept on every request
def media_types(accept: str) -> frozenset[str]:
    """The media types an Accept header lists, without parameters, in lower case."""
    return frozenset(part.split(";")[0].strip().lower() for part in accept.split(","))


def named(response: web.StreamResponse) -> web.StreamResponse:
    """An answer sent before its handler returns, named with the request id now: the middleware
    names the answer once the handler returns, too late for headers already sent."""
    request_id = request_ids().get("request_id")
    if isinstance(request_id, str):
        response.headers["X-Request-Id"] = request_id
    return response


def event(message: dict[str, Any] | bytes) -> bytes:
    """One SSE event carrying one JSON-RPC message (no id: a stateless stream is not resumed)."""
    data = message if isinstance(message, bytes) else orjson.dumps(message)
    return b"event: message\ndata: " + data + b"\n\n"


class ProgressStream:
    """The SSE answer of one call: opened by its first progress report, ended by its response.
    The call runs under `run`, which cancels it when the client goes away."""

    def __init__(self, request: web.Request, token: ProgressToken, *, keepalive_s: float,
                 watch_s: float = WATCH_S) -> None:
        self._request = request
        self._token = token
        self._keepalive_s = keepalive_s
        self._watch_s = watch_s
        self._writing = asyncio.Lock()
        self._last_sent = 0.0
        self.response: web.StreamResponse | None = None
        self.closed = False

    @property
    def started(self) -> bool:
        return self.response is not None

    async def report(self, progress: int, total: int | None, message: str) -> None:
        """Send one notifications/progress, opening the stream first (a `Progress`).

        Raises:
            StreamClosed: the client has gone.
        """
        params: dict[str, Any] = {"progressToken": self._token, "progress": progress}
        if total is not None:
            params["total"] = total
        params["message"] = message
        await self._send(event({"jsonrpc": "2.0", "method": "notifications/progress",
                                "params": params}))

    async def run(self, work: Awaitable[T]) -> T:
        """The call's result; keep-alives are sent while it runs.

        Raises:
            StreamClosed: the client went away, and the call was cancelled.
        """
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(self._watch(task))
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                if not self._gone():
                    raise  # this handler is being cancelled (shutdown): so is the call
                # The server cancels a handler whose client left when so configured
                # (aiohttp's handler_cancellation): that too is a closed stream.
                current.uncancel()
            self.closed = True
            raise StreamClosed("The client closed the stream") from None
        finally:
            watcher.cancel()
            task.cancel()
            await asyncio.wait({task, watcher})  # the call has stopped when the answer ends
            if not task.cancelled():
                task.exception()  # retrieved: raised above, or to be dropped with the call

    async def respond(self, body: bytes) -> web.StreamResponse:
        """The answer carrying the JSON-RPC response `body`: the stream's last event when it
        has opened, else a plain JSON answer."""
        if self.response is None:
            return web.Response(body=body, content_type="application/json")
        try:
            await self._send(event(body))
            await self.response.write_eof()
        except (StreamClosed, ConnectionError):
            self.closed = True  # the call is over anyway: nothing is left to stop
        return self.response

    def cancelled(self) -> web.StreamResponse:
        """What the handler returns for a call its client abandoned (nobody reads it)."""
        return self.response or web.Response(status=CLIENT_CLOSED)

    def _gone(self) -> bool:
        transport = self._request.transport
        return transport is None or transport.is_closing()

    async def _send(self, data: bytes) -> None:
        if self.closed or self._gone():
            self.closed = True
            raise StreamClosed("The client closed the stream")
        async with self._writing:
            try:
                if self.response is None:
                    self.response = await self._open()
                await self.response.write(data)
            except ConnectionError as exc:
                self.closed = True
                raise StreamClosed("The client closed the stream") from exc
            self._last_sent = asyncio.get_running_loop().time()

    async def _open(self) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": EVENT_STREAM, "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})  # nginx and the like would hold the events back
        await named(response).prepare(self._request)
        return response

    async def _watch(self, work: asyncio.Future[Any]) -> None:
        """Cancel the call when its client has gone; keep a quiet stream alive."""
        loop = asyncio.get_running_loop()
        while not work.done():
            await asyncio.sleep(self._watch_s)
            try:
                if self._gone():
                    raise StreamClosed("The client closed the stream")
                if self.response is not None and (
                        loop.time() - self._last_sent >= self._keepalive_s):
                    await self._send(KEEP_ALIVE)
            except StreamClosed:
                self.closed = True
                work.cancel()
                return
