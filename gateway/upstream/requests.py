"""Render a compiled request for one call into the request sent upstream. Pure.

Path arguments are percent-encoded whole, so no argument can change the path's shape, the query
or the host; the caller's credential goes only into the header the service names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import orjson

from gateway.errors import INVALID_PARAMS, ProtocolError
from gateway.records import record
from gateway.spec.compiled import CompiledRequest
from gateway.spec.models import QueryStyle, UpstreamSpec
from gateway.spec.templates import (
    ABSENT,
    RenderContext,
    render,
    render_value,
    resolve,
    scalar_text,
)


@record
class UpstreamRequest:
    method: str
    url: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes | None = None
    json_body: Any = None


_FORBIDDEN_SEGMENTS: Final = frozenset({"", ".", ".."})


def build_request(spec: CompiledRequest, upstream: UpstreamSpec, ctx: RenderContext,
                  token: str | None, *, traceparent: str | None = None,
                  extra_query: Mapping[str, Any] | None = None,
                  extra_headers: Mapping[str, str] | None = None) -> UpstreamRequest:
    """Render the upstream request of one tool call. Pure.

    Path arguments are percent-encoded whole (a `/`, `?`, `#` or `%` stays inside its segment),
    so no argument can change the path's shape, the query or the host.

    Raises:
        ProtocolError: -32602 for a path argument that is empty, `.`, `..`, or has control
            characters.
    """
    pieces: list[str] = [upstream.base_url]
    for part in spec.path:
        if part.literal is not None:
            pieces.append(part.literal)
            continue
        assert part.ref is not None  # noqa: S101 - a PathPart is a literal or a reference
        value = resolve(part.ref, ctx)
        text = "" if value is ABSENT or value is None else str(value)
        if text in _FORBIDDEN_SEGMENTS or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ProtocolError(INVALID_PARAMS, "Invalid params",
                                {"problems": [f"{part.argument}: not a usable path value"]})
        pieces.append(quote(text, safe=""))
    query: list[tuple[str, str]] = []
    for key, template in spec.query.items():
        value = render_value(template, ctx)
        if value is not ABSENT and value is not None:
            _encode_query(key, value, spec.query_style, query)
    for key, value in (extra_query or {}).items():
        _encode_query(key, value, spec.query_style, query)
    headers = dict(upstream.headers)
    for key, header in spec.headers.items():
        rendered = render(header, ctx)
        if rendered is not ABSENT:
            headers[key] = scalar_text(rendered)
    if token is not None:
        credential = upstream.credential
        headers[credential.header] = credential.format.replace("{token}", token)
    if traceparent is not None:
        headers["traceparent"] = traceparent
    headers.update(extra_headers or {})
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


def full_url(request: UpstreamRequest) -> str:
    """The URL as sent: the built path, then the query, percent-encoded as
    `urlencode(query, quote_via=quote)` does. Pure."""
    if not request.query:
        return request.url
    return request.url + "?" + "&".join(
        f"{_quoted(key)}={_quoted(value)}" for key, value in request.query)


_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]*")
"""What `quote(text, safe="")` leaves as it is: most names and values (limit=50, ids, sort
keys) are only this, and one match costs less than quote's encode, scan and decode."""


def _quoted(text: str) -> str:
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe="")
