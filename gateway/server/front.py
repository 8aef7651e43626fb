"""The front door every request passes, on either server (aiohttp's middleware, or the fast
lane's own call of it): our request id, and the host guard.
"""

from __future__ import annotations

import os
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.logs import begin_request_log
from gateway.server.hosts import PublicHosts
from gateway.server.state import PUBLIC_BASE

UNGUARDED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and scrapers name the pod's address as Host (Kubernetes), and these answers name no
URL."""


def begin_request(headers: CIMultiDictProxy[str]) -> str:
    """A new request's id: bound to every log line of the request (nothing of the one before is
    carried over) and told to the caller. A caller's `X-Request-Id` (short and printable) is
    kept apart as `correlation_id`: a value the caller chose must never pass for ours in the
    logs or the audit records."""
    given = headers.get("X-Request-Id", "")
    request_id = os.urandom(16).hex()  # secrets.token_hex(16), without its two calls between
    begin_request_log({"request_id": request_id, "correlation_id": given}
                      if 0 < len(given) <= 64 and given.isprintable()
                      else {"request_id": request_id})
    return request_id


def misdirected() -> web.Response:
    """421, for a request naming a Host this gateway does not serve."""
    return web.json_response(
        {"error": "misdirected_request",
         "error_description": "This gateway does not serve the host named in the request; use "
                              "its public URL."}, status=421)


def front_door(hosts: PublicHosts) -> Any:
    """The one middleware every request aiohttp reads passes (one, not two: each layer is a
    coroutine and a partial a request, about 4% of a `tools/list`): the request id, then the
    host guard. Requests for a Host this gateway does not serve are answered 421 before
    anything else; the others carry the public base URL they are answered as
    (`request[PUBLIC_BASE]`)."""

    @web.middleware
    async def door(request: web.Request, handler: Any) -> web.StreamResponse:
        headers = request.headers
        request_id = begin_request(headers)
        response: web.StreamResponse
        if request.path in UNGUARDED_PATHS:
            response = await handler(request)
        elif (base := hosts.base_for(headers.get("Host"), request.scheme)) is None:
            response = misdirected()
        else:
            request[PUBLIC_BASE] = base
            response = await handler(request)
        response.headers["X-Request-Id"] = request_id
        return response

    return door
