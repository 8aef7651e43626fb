"""The upstream edge: render a tool's request, send it with the shared httpx client, map failures.

The only module that imports httpx. Every httpx failure becomes the most specific gateway error,
so a slow, broken, huge or non-JSON upstream is always a readable tool error, never a 500 or a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx
import orjson

from gateway.errors import (
    AuthUnavailable,
    ProtocolError,
    ResponseShapeError,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.registry import CompiledRequest
from gateway.settings import Settings
from gateway.specs import QueryStyle, ServiceSpec
from gateway.templates import (
    ABSENT,
    RenderContext,
    render,
    render_value,
    resolve,
    scalar_text,
)
from gateway.transport import AiohttpTransport

_FORBIDDEN_SEGMENTS: Final = frozenset({"", ".", ".."})
_MAX_MESSAGE: Final = 300
DEFAULT_MESSAGE_KEYS: Final = ("message", "error", "error_description", "detail")


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
    """Sends rendered requests over one pooled client; bounded in time and size."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self._client = client
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
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                status, headers, raw = await self._exchange(request)
        except TimeoutError as exc:
            raise UpstreamUnavailable(
                f"The upstream did not answer within {limit:g} seconds; retry later."
            ) from exc
        except httpx.TimeoutException as exc:
            waited = time.monotonic() - started
            raise UpstreamUnavailable(
                f"The upstream did not answer in time ({waited:.1f}s); retry later."
            ) from exc
        except httpx.ConnectError as exc:
            raise UpstreamUnavailable(
                "The upstream could not be reached (connection failed); retry later."
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(
                f"The upstream exchange failed ({type(exc).__name__}); retry later."
            ) from exc
        return decode_response(status, headers, raw, message_keys)

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
        try:
            async with asyncio.timeout(limit):
                response = await self._client.request(method, url, data=form,
                                                       headers={"Accept": "application/json"})
        except TimeoutError as exc:
            raise AuthUnavailable(
                f"The authorization server did not answer within {limit:g} seconds; "
                "retry shortly.") from exc
        except httpx.HTTPError as exc:
            raise AuthUnavailable(
                f"The authorization server could not be reached ({type(exc).__name__}); "
                "retry shortly.") from exc
        if response.status_code != 200 or len(response.content) > 65_536:
            raise AuthUnavailable(
                f"The authorization server answered HTTP {response.status_code}; retry shortly.")
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise AuthUnavailable("The authorization server's answer was not JSON.") from exc
        if not isinstance(answer, dict):
            raise AuthUnavailable("The authorization server's answer was not an object.")
        return answer

    async def _exchange(self, request: UpstreamRequest) -> tuple[int, httpx.Headers, bytes]:
        cap = self._settings.upstream_max_response_bytes
        async with self._client.stream(
            request.method, request.url, params=tuple(request.query),
            headers=request.headers,
            content=request.body,
        ) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise UpstreamUnavailable(_too_large(cap))
            chunks: list[bytes] = []
            size = 0
            # Decoded bytes are counted, so a compressed body cannot expand past the bound either.
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    raise UpstreamUnavailable(_too_large(cap))
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)


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


def create_client(settings: Settings) -> httpx.AsyncClient:
    """The one pooled upstream client of a process: httpx's API over aiohttp's pool, or over
    httpx's own pool when `upstream_transport` says so."""
    transport = (AiohttpTransport(max_connections=settings.upstream_max_connections)
                 if settings.upstream_transport == "aiohttp" else None)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.upstream_timeout_s,
                              connect=settings.upstream_connect_timeout_s),
        limits=httpx.Limits(max_connections=settings.upstream_max_connections,
                            max_keepalive_connections=settings.upstream_max_keepalive),
        follow_redirects=False,
        trust_env=False,
        transport=transport,
    )
