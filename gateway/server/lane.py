"""The fast lane: MCP requests of the common shape answered without aiohttp's request and
response objects. An edge.

Nearly every request a gateway serves is one shape: a POST of a small JSON body to a service's
MCP endpoint, over a kept-alive connection. For those, aiohttp's request object, router,
middleware, response object and stream writer cost about as much as the gateway's own work on a
`tools/list` (bench/README.md). aiohttp's parser (llhttp, in C) still reads every byte, so the
two paths never disagree on where a request ends; the lane then takes each parsed request whose
body is whole, runs the same front door, guards and pipeline as aiohttp's path (server/front.py,
server/endpoint.py) and writes the answer's bytes to the transport itself.

Any other request is left to aiohttp's loop, in order: another method or path, a body still
arriving, HTTP/1.0, an upgrade, `Expect`, a `_meta` (which may ask for an answer streamed as
SSE), one that did not parse, and any request that came while aiohttp's loop was busy. Requests
are answered in the order they came: the lane takes a request only while aiohttp's loop waits
for one and no lane call is in flight. The bounds stay aiohttp's: its idle timer closes a
connection that sends no complete request in time (it is off while a lane call runs), and a stop
waits for the lane's call in flight as for one of its own.
"""

from __future__ import annotations

import asyncio
import functools
import re
from http import HTTPStatus
from typing import Any, Final

import orjson
import structlog
from aiohttp import web
from aiohttp.helpers import parse_content_type, rfc822_formatted_time
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.streams import StreamReader

from gateway.server.endpoint import answer_on_lane
from gateway.server.front import begin_request, misdirected
from gateway.server.incoming import Incoming, Reply
from gateway.server.quiet import SERVER_NAME, QuietRequestHandler, access_line
from gateway.server.state import HOSTS, SPECS
from gateway.telemetry.metrics import LANE_ERRORS

log = structlog.get_logger("gateway.http")
_BREAK: Final = re.compile(r"[\r\n\x00]")
_CLOSE: Final = "Connection: close\r\n"
_INTERNAL_BODY: Final = orjson.dumps({"error": "internal_server_error"})
INTERNAL_ANSWER: Final = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nConnection: close"
    b"\r\nContent-Length: " + str(len(_INTERNAL_BODY)).encode() + b"\r\n\r\n", _INTERNAL_BODY)


def answer_parts(response: web.StreamResponse | Reply, request_id: str, close: bool
                 ) -> tuple[bytes, ...]:
    """The head (status line and headers), then the body's parts, of a plain answer, as
    aiohttp would write it; written as they are (one writev), so the body is not copied
    again.

    Raises:
        TypeError: the answer is not a plain one (a stream, compressed, or chunked).
        ValueError: a header would hold a line break.
    """
    if isinstance(response, Reply):  # the common answer, written without a Response
        body = response.parts
        size = sum(map(len, body))
        head = _reply_head(response.status, tuple(response.headers.items()))
    else:
        given = response.body if isinstance(response, web.Response) else None
        if given is None and isinstance(response, web.Response):
            given = b""  # no body (202 for a notification): Content-Length 0, as aiohttp says
        if not isinstance(given, bytes) or response.chunked or response.compression:
            raise TypeError("the lane writes only plain answers with a body of bytes")
        body, size = (given,), len(given)
        head = _head(f"HTTP/1.1 {response.status} {response.reason}",
                     *(f"{name}: {value}" for name, value in response.headers.items()))
    return (f"{head}X-Request-Id: {request_id}\r\nContent-Length: {size}\r\n"
            f"Date: {rfc822_formatted_time()}\r\nServer: {SERVER_NAME}\r\n"
            f"{_CLOSE if close else ''}\r\n").encode(), *body


@functools.lru_cache(maxsize=64)  # a few statuses and header sets: the ETag of each catalog
def _reply_head(status: int, headers: tuple[tuple[str, str], ...]) -> str:
    """The start of a Reply's head, up to the headers that differ on every answer."""
    return _head(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                 "Content-Type: application/json",
                 *(f"{name}: {value}" for name, value in headers))


def _head(*lines: str) -> str:
    """Lines of a head, each ended.

    Raises:
        ValueError: a line holds a line break (a value would add a header or end the head).
    """
    if any(_BREAK.search(line) for line in lines):
        raise ValueError("a header holds a line break")
    return "".join(f"{line}\r\n" for line in lines)


class LaneHandler(QuietRequestHandler):
    """aiohttp's connection handler (the quiet one), with the lane taking the requests it can
    answer from the queue aiohttp's parser fills."""

    __slots__ = ("_app", "_call", "_taking")

    def __init__(self, server: web.Server, app: web.Application, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._app = app
        self._call: asyncio.Task[None] | None = None
        self._taking = False

    def data_received(self, data: bytes) -> None:
        # aiohttp's parser queues what it reads and wakes aiohttp's loop; the loop is woken
        # here instead, only for the requests the lane leaves it.
        waiter, self._waiter = self._waiter, None
        try:
            super().data_received(data)
        finally:
            self._waiter = waiter
        self._dispatch()

    def _dispatch(self) -> None:
        """The first request queued goes to the lane or, with the rest, to aiohttp's loop."""
        messages, waiter = self._messages, self._waiter
        if (not messages or self._taking or self._call is not None or waiter is None
                or waiter.done()):
            return  # nothing new, the lane is busy, or aiohttp's loop is not idle
        message, payload = messages[0]
        if not isinstance(message, RawRequestMessage):  # it did not parse: aiohttp's 400
            waiter.set_result(None)
            return
        # Reading the body may resume reading, which parses what was held back and comes
        # here again: that call leaves the queue alone, and whoever takes this request
        # takes the rest in turn.
        self._taking = True
        try:
            body = self._whole_body(message, payload)
        finally:
            self._taking = False
        if body is None:
            waiter.set_result(None)  # aiohttp's turn
            return
        messages.popleft()
        self._consumed()
        self._request_in_progress = True
        self._call = self._loop.create_task(self._answer(message, body))

    def _whole_body(self, message: RawRequestMessage, payload: StreamReader) -> bytes | None:
        """The body of the first request queued when the lane answers it; None for aiohttp's
        loop (the body then left for it to read, as it came)."""
        if message.method != "POST" or (
                message.version != HttpVersion11 or message.upgrade or message.chunked
                or "Expect" in message.headers or not payload.is_eof()
                or message.path not in self._app[SPECS].registry.by_endpoint):
            return None
        body = payload.read_nowait(-1)
        if b"_meta" in body:  # may ask for progress, streamed: only aiohttp's path streams
            kept = StreamReader(self, max(len(body), 2**16), loop=self._loop)
            kept.feed_data(body)
            kept.feed_eof()
            self._messages[0] = (message, kept)
            return None
        return body

    def _consumed(self) -> None:
        """What aiohttp's loop does on taking a request from the queue: the parser may read on,
        and reading resumes once the queue drained."""
        if self._parser is not None:
            self._parser.message_consumed()
        if self._buffer_paused and len(self._messages) <= self._msg_queue_resume_size:
            self._resume_reading_if_drained()

    async def _answer(self, message: RawRequestMessage, body: bytes) -> None:
        started = self._loop.time()
        try:
            try:
                request_id = begin_request(message.headers)
                incoming = self._incoming(message)
                response = (misdirected() if incoming is None
                            else await answer_on_lane(incoming, body))
                close = message.should_close or self._close or (
                    not isinstance(response, Reply) and response.keep_alive is False)
                answer = answer_parts(response, request_id, close)
                status, size = response.status, sum(map(len, answer)) - len(answer[0])
            except Exception:
                LANE_ERRORS.inc()
                log.exception("lane_error", path=message.path)
                answer, close, status, size = INTERNAL_ANSWER, True, 500, len(_INTERNAL_BODY)
            self._write(answer, close)
        finally:
            self._request_in_progress = False
            if self._handler_waiter is not None and not self._handler_waiter.done():
                self._handler_waiter.set_result(None)  # a stop waiting for this call
        if self.access_logger is not None:
            access_line("POST", message.path, status, size, self._loop.time() - started,
                        _address(self.peername))
        await self._next()

    def _incoming(self, message: RawRequestMessage) -> Incoming | None:
        """The request as the endpoint reads it; None when its Host is not served (421)."""
        headers = message.headers
        base = self._app[HOSTS].base_for(headers.get("Host"), "http")
        if base is None:
            return None
        given = headers.get("Content-Type")
        content_type = parse_content_type(given)[0] if given else "application/octet-stream"
        length = headers.get("Content-Length")
        return Incoming(self._app, "POST", message.path, headers, message.raw_headers,
                        _address(self.peername), base, content_type,
                        int(length) if length is not None else None)

    def _write(self, answer: tuple[bytes, ...], close: bool) -> None:
        if self.transport is None:  # the client left: the call ran to its end all the same
            return
        self.transport.writelines(answer)
        if close:
            self.force_close()

    async def _next(self) -> None:
        """After an answer: the next request queued, or the idle timeout again."""
        if self.transport is not None and self._paused:
            try:  # a client that reads slowly: nothing more until it has read this
                await self._drain_helper()
            except ConnectionError:
                pass  # gone: connection_lost has closed everything
        self._call = None
        if self.transport is None or self._close or self._force_close:
            return
        if self._messages:
            self._dispatch()
        elif self._keepalive_timeout > 0:
            # As aiohttp's loop does: the idle deadline moves, and the timer already armed
            # (from an earlier answer) is left to fire and re-arm itself for it, rather than
            # being cancelled and made again on every request.
            close_time = self._loop.time() + self._keepalive_timeout
            self._next_keepalive_close_time = close_time
            if self._keepalive_handle is None:
                self._keepalive_handle = self._loop.call_at(close_time,
                                                            self._process_keepalive)

    def _process_keepalive(self) -> None:
        """The idle timer: never while a lane call runs (aiohttp's loop, idle meanwhile, would
        take the connection for idle); the call's end arms it again."""
        if self._call is not None:
            self._keepalive_handle = None
            return
        super()._process_keepalive()

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109
        """aiohttp's stop (it waits for the call in flight, up to `timeout`); then a lane call
        still running is cancelled, as aiohttp cancels its own."""
        await super().shutdown(timeout)
        if self._call is not None and not self._call.done():
            self._call.cancel()


def _address(peer: Any) -> str | None:
    return peer[0] if isinstance(peer, tuple) else None


def lane_handler(server: web.Server, app: web.Application) -> LaneHandler:
    """A connection handler for `server` (as `server()` makes one) with the lane in front."""
    return LaneHandler(server, app, loop=asyncio.get_running_loop(),
                       **server._kwargs)  # the handler arguments aiohttp keeps
