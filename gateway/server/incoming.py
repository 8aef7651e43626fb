"""What the MCP endpoint reads of an HTTP request, whichever server read it: aiohttp's (any
request) or the fast lane's (server/lane.py: the common shape, read without aiohttp's request
object). Pure.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.server.state import PUBLIC_BASE


class Incoming:
    """One request to an MCP endpoint: its line, its headers, where it came from and the base
    URL it is answered as (the host guard's). `stream_to` is aiohttp's request, through which an
    answer can be streamed; None on the lane, which hands such requests to aiohttp."""

    __slots__ = ("app", "content_length", "content_type", "headers", "method", "path",
                 "public_base", "raw_headers", "remote", "stream_to")

    def __init__(self, app: web.Application, method: str, path: str,
                 headers: CIMultiDictProxy[str], raw_headers: tuple[tuple[bytes, bytes], ...],
                 remote: str | None, public_base: str, content_type: str,
                 content_length: int | None, stream_to: web.Request | None = None) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.headers = headers
        """Case-insensitive, and it keeps repeated headers."""
        self.raw_headers = raw_headers
        """The header lines as sent, so that a repeated routing header can be seen."""
        self.remote = remote
        self.public_base = public_base
        self.content_type = content_type
        """The media type without its parameters, lower case (application/octet-stream when
        none is given), as aiohttp reads it."""
        self.content_length = content_length
        self.stream_to = stream_to

    @classmethod
    def of(cls, request: web.Request) -> Incoming:
        """A request aiohttp read (after the host guard)."""
        return cls(request.app, request.method, request.path, request.headers,
                   request.raw_headers, request.remote, request[PUBLIC_BASE],
                   request.content_type, request.content_length, request)


class Reply:
    """A JSON answer of the endpoint's own (the common case: 200 with a body of bytes), before
    a server writes it: aiohttp's as a Response (`response`), the lane as its bytes, without
    building one. The body may come in parts (protocol/replies.py), which the lane writes as
    they are and aiohttp's path joins."""

    __slots__ = ("headers", "parts", "status")

    def __init__(self, body: bytes | tuple[bytes, ...], headers: dict[str, str] | None = None,
                 status: int = 200) -> None:
        self.parts = (body,) if isinstance(body, bytes) else body
        self.headers = headers or {}
        self.status = status

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    def response(self) -> web.Response:
        return web.Response(body=self.body, status=self.status,
                            content_type="application/json", headers=self.headers)
