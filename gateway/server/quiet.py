"""How the HTTP edge speaks for itself, on either server (aiohttp's or the fast lane): the
Server header's name, quiet answers to malformed HTTP, and the access line.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

import orjson
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

log = structlog.get_logger("gateway.http")
SERVER_NAME: Final = "mcp-gateway"
"""The Server header: no library or Python version for a scanner to match."""


class QuietRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, except that a request it cannot parse is answered without
    echoing its bytes and logged without them: a malformed header line may hold a credential."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.warning("http_error", status=status,
                    reason=type(exc).__name__ if exc is not None else None)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer was already being sent")
        response = web.Response(status=status, content_type="application/json",
                                body=orjson.dumps({"error": _error_name(status)}),
                                headers={"Server": SERVER_NAME})
        response.force_close()
        return response


def _error_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "error"


def access_line(method: str, path: str, status: int, size: int, seconds: float,
                remote: str | None) -> None:
    """One structured line per HTTP request: method, path without its query string (which may
    carry a token), status, size and time; through the same redacting log pipeline."""
    log.info("http_request", method=method, path=path, status=status, bytes=size,
             duration_ms=round(seconds * 1000, 2), remote=remote)


class AccessLog(AbstractAccessLogger):
    """The access line of each request aiohttp answers."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        access_line(request.method, request.path, response.status, response.body_length, time,
                    request.remote)

    @property
    def enabled(self) -> bool:
        return True
