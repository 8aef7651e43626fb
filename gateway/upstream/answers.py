"""Upstream answers and failures in the words a model can act on: the one table that maps a
status, a broken exchange or a non-JSON body to a gateway error. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from gateway.errors import (
    ResponseShapeError,
    UpstreamError,
    WireError,
)

_MAX_MESSAGE: Final = 300


DEFAULT_MESSAGE_KEYS: Final = ("message", "error", "error_description", "detail")


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def decode_response(status: int, headers: Mapping[str, str], raw: bytes,
                    message_keys: tuple[str, ...] = DEFAULT_MESSAGE_KEYS, *,
                    retry_after_s: float | None = None,
                    pruned: Callable[[bytes], Any] | None = None) -> UpstreamResponse:
    """Decode an upstream answer, or raise the error it stands for (with the wait its
    Retry-After asked for, read by the caller). Pure.

    `pruned` decodes a successful answer keeping only what the tool reads
    (gateway/spec/reads.py); it raises ValueError for a body it leaves to the whole decoding.

    Raises:
        UpstreamError, ResponseShapeError: see Upstream.send.
    """
    if pruned is not None and 200 <= status < 300:
        try:
            return UpstreamResponse(status, pruned(raw), headers)
        except ValueError:
            pass
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
                            retry_after_s=retry_after_s)
    if raw.strip() and not parsed:
        kind = headers.get("content-type", "unknown content").split(";")[0]
        what = "a body that is not valid JSON" if "json" in kind else f"{kind} instead of JSON"
        raise ResponseShapeError(
            f"The upstream answered HTTP {status} with {what}; "
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


def unavailable_message(failure: WireError, waited_s: float, cap: int) -> str:
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
