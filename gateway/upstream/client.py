"""The upstream edge: render a tool's request, send it over the shared wire, map failures.

Every wire failure becomes the most specific gateway error, so a slow, broken, huge or non-JSON
upstream is always a readable tool error, never a 500 or a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode

import orjson

from gateway.calls.context import Caller
from gateway.errors import (
    AuthUnavailable,
    UpstreamUnavailable,
    WireError,
)
from gateway.settings import Settings
from gateway.spec.compiled import CompiledRequest
from gateway.spec.templates import RenderContext
from gateway.upstream.answers import (
    DEFAULT_MESSAGE_KEYS,
    UpstreamResponse,
    decode_response,
    unavailable_message,
)
from gateway.upstream.requests import UpstreamRequest, build_request, full_url
from gateway.upstream.wire import Wire

_AUTHORIZATION_ANSWER_BYTES: Final = 65_536


class Upstream:
    """Sends rendered requests over the process's one pooled wire; bounded in time and size."""

    def __init__(self, wire: Wire, settings: Settings) -> None:
        self._wire = wire
        self._settings = settings

    async def send(self, request: UpstreamRequest, *, timeout_s: float | None = None,
                   message_keys: tuple[str, ...] = DEFAULT_MESSAGE_KEYS) -> UpstreamResponse:
        """Send one request and decode its JSON answer.

        Raises:
            UpstreamError: a non-2xx answer (status and the upstream's own message).
            UpstreamUnavailable: timeout, connection failure, or a body over the size bound.
            ResponseShapeError: a 2xx answer that is not JSON.
        """
        limit = min(timeout_s or self._settings.upstream_timeout_s,
                    self._settings.upstream_timeout_s)
        cap = self._settings.upstream_max_response_bytes
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                answer = await self._wire.fetch(request.method, full_url(request),
                                                headers=request.headers, body=request.body,
                                                max_bytes=cap)
        except TimeoutError as exc:
            raise UpstreamUnavailable(
                f"The upstream did not answer within {limit:g} seconds; retry later.",
                maybe_delivered=True) from exc
        except WireError as exc:
            # Only a failed connection proves the request never left; any later failure may
            # come after the upstream acted on it.
            raise UpstreamUnavailable(
                unavailable_message(exc, time.monotonic() - started, cap),
                maybe_delivered=exc.kind != "connect") from exc
        return decode_response(answer.status, answer.headers, answer.body, message_keys)

    async def fetch_document(self, url: str) -> dict[str, Any]:
        """GET a small JSON document (discovery metadata).

        Raises:
            UpstreamUnavailable: no timely 200 answer with a JSON object.
        """
        try:
            return await self._authorization_server("GET", url, None)
        except AuthUnavailable as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def send_spec(self, request: CompiledRequest, caller: Caller, ctx: RenderContext, *,
                        extra_query: Mapping[str, Any] | None = None,
                        extra_headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """Render a spec's request for one call and send it with the service's bounds.

        Raises:
            ProtocolError, UpstreamError, UpstreamUnavailable, ResponseShapeError: see
            build_request and send.
        """
        rendered = build_request(request, caller.upstream, ctx, caller.token,
                                 traceparent=caller.traceparent, extra_query=extra_query,
                                 extra_headers=extra_headers)
        return await self.send(rendered, timeout_s=caller.upstream.timeout_s,
                               message_keys=tuple(caller.upstream.error_message))

    async def introspect(self, url: str, token: str) -> Mapping[str, Any]:
        """Ask an RFC 7662 introspection endpoint about a token.

        Raises:
            AuthUnavailable: no timely, well-formed answer (never read as "valid").
        """
        return await self._authorization_server("POST", url, {"token": token})

    async def _authorization_server(self, method: str, url: str,
                                    form: dict[str, str] | None) -> dict[str, Any]:
        """One small JSON exchange with an authorization server, bounded in time and size.

        Raises:
            AuthUnavailable: no timely 200 answer holding a JSON object.
        """
        limit = self._settings.introspection_timeout_s
        headers = {"Accept": "application/json"}
        body = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form).encode()
        try:
            async with asyncio.timeout(limit):
                answer = await self._wire.fetch(method, url, headers=headers, body=body,
                                                max_bytes=_AUTHORIZATION_ANSWER_BYTES)
        except TimeoutError as exc:
            raise AuthUnavailable(
                f"The authorization server did not answer within {limit:g} seconds; "
                "retry shortly.") from exc
        except WireError as exc:
            reason = "its answer was too large" if exc.kind == "too_large" else exc.detail
            raise AuthUnavailable(
                f"The authorization server could not be reached ({reason}); "
                "retry shortly.") from exc
        if answer.status != 200:
            raise AuthUnavailable(
                f"The authorization server answered HTTP {answer.status}; retry shortly.")
        try:
            parsed = orjson.loads(answer.body)
        except orjson.JSONDecodeError as exc:
            raise AuthUnavailable("The authorization server's answer was not JSON.") from exc
        if not isinstance(parsed, dict):
            raise AuthUnavailable("The authorization server's answer was not an object.")
        return parsed


