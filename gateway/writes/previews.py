"""What a write's preview shows of the request it would send: the request itself, never its
credential, de-identified for the caller except for what the caller typed. Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.spec.compiled import CompiledRequest, CompiledTool
from gateway.upstream.requests import UpstreamRequest

Redactor = Callable[[Any], Any]
"""De-identifies a value for the calling principal (identity when it may see PII)."""


def as_given(described: Any, redact: Redactor, arguments: dict[str, Any]) -> Any:
    """The request a preview shows: de-identified like any result, except that what the caller
    typed is shown as typed. Mapping a caller's guess onto the pseudonym that reads show for
    the real person would confirm the guess; the caller's own input reveals nothing new, and
    anything the upstream supplied (a lookup, the current state) stays de-identified."""
    return _restore(described, redact(described), frozenset(_strings(arguments)))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _restore(original: Any, redacted: Any, given: frozenset[str]) -> Any:
    if isinstance(original, str) and original in given:
        return original
    if isinstance(original, dict) and isinstance(redacted, dict):
        return {key: _restore(original[key], value, given) if key in original else value
                for key, value in redacted.items()}
    if isinstance(original, list) and isinstance(redacted, list) and len(original) == len(
            redacted):
        return [_restore(o, r, given) for o, r in zip(original, redacted, strict=True)]
    return redacted


def write_request(tool: CompiledTool) -> CompiledRequest:
    """The one request a write sends (the spec model gives every write tool a `request`)."""
    if tool.request is None:
        raise ValueError(f"write tool {tool.name} has no request")
    return tool.request


def describe(request: UpstreamRequest) -> dict[str, Any]:
    """What a preview shows of the request it would send; never the credential."""
    description: dict[str, Any] = {"method": request.method, "url": request.url}
    if request.query:
        description["query"] = dict(request.query)
    if request.json_body is not None:
        description["body"] = request.json_body
    return description

