"""The upstream edge: render a tool's request, send it over the shared wire, map failures.

Every wire failure becomes the most specific gateway error, so a slow, broken, huge or non-JSON
upstream is always a readable tool error, never a 500 or a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode

import orjson

from gateway.errors import (
    AuthUnavailable,
    ProtocolError,
    ResponseShapeError,
    UpstreamError,
    UpstreamUnavailable,
    WireError,
)
from gateway.settings import Settings
from gateway.spec.compiled import CompiledRequest
from gateway.spec.models import QueryStyle, ServiceSpec
from gateway.spec.templates import (
    ABSENT,
    RenderContext,
    render,
    render_value,
    resolve,
    scalar_text,
)
from gateway.upstream.wire import Wire

_FORBIDDEN_SEGMENTS: Final = frozenset({"", ".", ".."})
_MAX_MESSAGE: Final = 300
DEFAULT_MESSAGE_KEYS: Final = ("message", "error", "error_description", "detail")
_AUTHORIZATION_ANSWER_BYTES: Final = 65_536


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes | None = None
    json_body: Any = None


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def build_request(spec: CompiledRequest, service: ServiceSpec, ctx: RenderContext,
                  token: str | None, *, traceparent: str | None = None,
                  extra_query: Mapping[str, Any] | None = None) -> UpstreamRequest:
    """Render the upstream request of one tool call. Pure.

    Path arguments are percent-encoded whole (a `/`, `?`, `#` or `%` stays inside its segment),
    so no argument can change the path's shape, the query or the host.

    Raises:
        ProtocolError: -32602 for a path argument that is empty, `.`, `..`, or has control
            characters.
    """
    pieces: list[str] = [service.upstream.base_url]
    for part in spec.path:
        if part.literal is not None:
            pieces.append(part.literal)
            continue
        assert part.ref is not None  # noqa: S101 - a PathPart is a literal or a reference
        value = resolve(part.ref, ctx)
        text = "" if value is ABSENT or value is None else str(value)
        if text in _FORBIDDEN_SEGMENTS or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ProtocolError(-32602, "Invalid params",
                                {"problems": [f"{part.argument}: not a usable path value"]})
        pieces.append(quote(text, safe=""))
    query: list[tuple[str, str]] = []
    for key, template in spec.query.items():
        value = render_value(template, ctx)
        if value is not ABSENT and value is not None:
            _encode_query(key, value, spec.query_style, query)
    for key, value in (extra_query or {}).items():
        _encode_query(key, value, spec.query_style, query)
    headers = dict(service.upstream.headers)
    for key, header in spec.headers.items():
        rendered = render(header, ctx)
        if rendered is not ABSENT:
            headers[key] = scalar_text(rendered)
    if token is not None:
        credential = service.upstream.credential
        headers[credential.header] = credential.format.replace("{token}", token)
    if traceparent is not None:
        headers["traceparent"] = traceparent
    body = None
    json_body = None
    if spec.body is not None:
        json_body = render_value(spec.body, ctx)
        body = orjson.dumps(json_body)
        headers["Content-Type"] = "application/json"
    headers.setdefault("Accept", "application/json")
    return UpstreamRequest(spec.method, "".join(pieces), query, headers, body, json_body)


def _encode_query(key: str, value: Any, style: QueryStyle, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for sub, item in value.items():
            if item is not None and item is not ABSENT:
                _encode_query(f"{key}[{sub}]", item, style, out)
    elif isinstance(value, list):
        if not value:
            return
        if any(isinstance(v, dict | list) for v in value):
            for index, item in enumerate(value):
                _encode_query(f"{key}[{index}]", item, style, out)
        elif style.arrays == "comma":
            out.append((key, ",".join(_scalar(v, style) for v in value)))
        else:
            name = f"{key}[]" if style.arrays == "brackets" else key
            out.extend((name, _scalar(v, style)) for v in value)
    else:
        out.append((key, _scalar(value, style)))


def _scalar(value: Any, style: QueryStyle) -> str:
    if isinstance(value, bool):
        if style.booleans == "one_zero":
            return "1" if value else "0"
        return "true" if value else "false"
    return str(value)


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
                f"The upstream did not answer within {limit:g} seconds; retry later."
            ) from exc
        except WireError as exc:
            raise UpstreamUnavailable(_unavailable(exc, time.monotonic() - started, cap)) from exc
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

    async def send_spec(self, request: CompiledRequest, service: ServiceSpec, ctx: RenderContext,
                        token: str | None, *, traceparent: str | None = None,
                        extra_query: Mapping[str, Any] | None = None) -> UpstreamResponse:
        """Render a spec's request for one call and send it with the service's bounds.

        Raises:
            ProtocolError, UpstreamError, UpstreamUnavailable, ResponseShapeError: see
            build_request and send.
        """
        rendered = build_request(request, service, ctx, token, traceparent=traceparent,
                                 extra_query=extra_query)
        return await self.send(rendered, timeout_s=service.upstream.timeout_s,
                               message_keys=tuple(service.upstream.error_message))

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


def full_url(request: UpstreamRequest) -> str:
    """The URL as sent: the built path, then the query, percent-encoded. Pure."""
    if not request.query:
        return request.url
    return request.url + "?" + urlencode(request.query, quote_via=quote)


def _unavailable(failure: WireError, waited_s: float, cap: int) -> str:
    if failure.kind == "too_large":
        return _too_large(cap)
    if failure.kind == "timeout":
        return f"The upstream did not answer in time ({waited_s:.1f}s); retry later."
    if failure.kind == "connect":
        return "The upstream could not be reached (connection failed); retry later."
    return f"The upstream exchange failed ({failure.detail}); retry later."


def _too_large(cap: int) -> str:
    return (f"The upstream answer is larger than {cap // 1_000_000 or 1} MB and was not read; "
            "narrow the request (filters, a smaller limit).")


def decode_response(status: int, headers: Mapping[str, str], raw: bytes,
                    message_keys: tuple[str, ...] = DEFAULT_MESSAGE_KEYS) -> UpstreamResponse:
    """Decode an upstream answer, or raise the error it stands for. Pure.

    Raises:
        UpstreamError, ResponseShapeError: see Upstream.send.
    """
    body: Any = None
    parsed = False
    if raw.strip():
        try:
            body = orjson.loads(raw)
            parsed = True
        except orjson.JSONDecodeError:
            parsed = False
    if not 200 <= status < 300:
        raise UpstreamError(status, error_message(body if parsed else raw, message_keys),
                            retry_after_s=_retry_after(headers.get("retry-after")))
    if raw.strip() and not parsed:
        kind = headers.get("content-type", "unknown content").split(";")[0]
        raise ResponseShapeError(
            f"The upstream answered HTTP {status} with {kind} instead of JSON; "
            "it may be down or misconfigured. Retry later."
        )
    return UpstreamResponse(status, body, headers)


def error_message(body: Any, keys: tuple[str, ...] = DEFAULT_MESSAGE_KEYS) -> str:
    """The upstream's own words about an error, shortened and stripped of markup."""
    if isinstance(body, dict):
        for key in keys:
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return _clean(value)
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return _clean(value["message"])
        return ""
    if isinstance(body, bytes):
        text = body.decode("utf-8", "replace")
        if "<" in text[:200]:
            return "(an HTML page, not an API error)"
        return _clean(text)
    return ""


def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
