"""JSON-RPC out: results shaped by the mcp_types surface of the request's version, errors as
JSON-RPC error bodies, and the HTTP status of each. Pure.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.methods import CACHEABLE_METHODS, serialize_server_result

from gateway import native
from gateway.errors import INTERNAL_ERROR, ProtocolError
from gateway.protocol.envelope import Era, Inbound, RequestId
from gateway.protocol.methods import Outcome, server_info
from gateway.protocol.sdk_inbound import ERROR_CODE_HTTP_STATUS
from gateway.spec.compiled import CompiledService

ShapedCache = MutableMapping[Any, bytes]
"""Encoded results reused across calls, keyed by service, scope set, page and version;
bounded."""


def http_status(error: ProtocolError, era: Era) -> int:
    """The HTTP status of a JSON-RPC error: explicit, else the modern table, else 200."""
    if error.http_status is not None:
        return error.http_status
    if era == "modern":
        return ERROR_CODE_HTTP_STATUS.get(error.code, 200)
    return 200


def error_body(error: ProtocolError) -> dict[str, Any]:
    payload: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        payload["data"] = error.data
    return {"jsonrpc": "2.0", "id": error.request_id, "error": payload}


def error_reply(code: int, message: str, request_id: RequestId | None = None,
                data: Any = None) -> dict[str, Any]:
    """A JSON-RPC error body for a refusal made outside the method table (HTTP guards, auth)."""
    payload: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        payload["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": payload}


def internal_error(request_id: RequestId | None) -> dict[str, Any]:
    return error_reply(INTERNAL_ERROR, "Internal error", request_id)


def encode_reply(inbound: Inbound, service: CompiledService, outcome: Outcome,
                 cache: ShapedCache) -> bytes:
    """The JSON-RPC response to a routed request, encoded (reply_parts, joined)."""
    return b"".join(reply_parts(inbound, service, outcome, cache))


def reply_parts(inbound: Inbound, service: CompiledService, outcome: Outcome,
                cache: ShapedCache) -> tuple[bytes, ...]:
    """The JSON-RPC response to a routed request, encoded, in parts whose concatenation is the
    body: a server writes them as they are, so a large result (a reused list, a tool's
    structuredContent and its text copy) is not copied once more to be joined. The response is
    assembled around the result's JSON: what is already encoded is not encoded again. Results
    that depend only on the caller's scopes (a page of a list) are shaped once per service,
    scope set, page and version; the key holds the service itself, so a result of one loaded
    tree never answers for another."""
    info = server_info(service)
    if outcome.structured is not None:
        rest = orjson.dumps(shape_result(inbound, outcome.result, info, ttl_ms=outcome.ttl_ms,
                                         cache_scope=outcome.cache_scope, validated=True))
        pieces: tuple[bytes, ...] = (
            b'{"content":[{"type":"text","text":', json_text(outcome.structured), b"}],",
            rest[1:-1], b',"structuredContent":', outcome.structured, b"}")
    elif outcome.reusable is None:
        pieces = (orjson.dumps(shape_result(inbound, outcome.result, info,
                                            ttl_ms=outcome.ttl_ms,
                                            cache_scope=outcome.cache_scope)),)
    else:
        key = (service, outcome.reusable, inbound.version, inbound.era)
        shaped = cache.get(key)
        if shaped is None:
            shaped = orjson.dumps(shape_result(inbound, outcome.result, info,
                                               ttl_ms=outcome.ttl_ms,
                                               cache_scope=outcome.cache_scope))
            cache[key] = shaped
        pieces = (shaped,)
    return (b'{"jsonrpc":"2.0","id":' + orjson.dumps(inbound.id) + b',"result":', *pieces,
            b"}")


def json_text(encoded: bytes) -> bytes:
    """The JSON string of a JSON text (UTF-8, as orjson writes it): a tool result's text copy,
    made from its bytes in C, without the str that orjson would encode back (byte for byte
    what `orjson.dumps(encoded.decode())` gives, the pure-Python twin)."""
    compiled = native.rows()
    if compiled is not None:
        quoted: bytes = compiled.quoted(encoded)
        return quoted
    return orjson.dumps(encoded.decode())


def shape_result(inbound: Inbound, result: dict[str, Any], server_info: dict[str, Any],
                 *, ttl_ms: int = 0, cache_scope: str = "private",
                 validated: bool = False) -> dict[str, Any]:
    """A result validated and shaped by the mcp_types surface of the request's version.

    Modern results carry resultType, the serverInfo stamp, and caching hints on cacheable methods.
    `validated` skips the surface check for results built in a shape already known to pass it
    (the default tool-call rendering: text content, structuredContent, isError), which is the
    hot path; anything a spec shapes itself is always checked.
    """
    if inbound.era == "modern":
        result = dict(result)
        result.setdefault("resultType", "complete")
        meta = dict(result.get("_meta") or {})
        meta[SERVER_INFO_META_KEY] = server_info
        result["_meta"] = meta
        if inbound.method in CACHEABLE_METHODS:
            result.setdefault("ttlMs", ttl_ms)
            result.setdefault("cacheScope", cache_scope)
    if validated:
        return result
    return serialize_server_result(inbound.method, inbound.version, result)
