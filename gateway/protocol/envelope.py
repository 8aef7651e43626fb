"""JSON-RPC in, for MCP over Streamable HTTP, stateless, both eras: decode a body, read its
envelope, route it to an era and version and validate it. The first step of every request. Pure.

Legacy (handshake) era: 2025-03-26, 2025-06-18, 2025-11-25, chosen by `initialize` or by the
MCP-Protocol-Version header. Modern era: 2026-07-28, chosen by the per-request `_meta` envelope.
Every message is checked against the mcp_types surface of its version; replies.py shapes the
answers and maps JSON-RPC error codes to HTTP statuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any, Final, Literal

import orjson
from mcp_types import PROTOCOL_VERSION_META_KEY
from mcp_types.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp_types.methods import validate_client_request
from mcp_types.version import LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from gateway.errors import ProtocolError
from gateway.protocol.sdk_inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from gateway.records import record

LEGACY_VERSIONS: Final = ("2025-03-26", "2025-06-18", "2025-11-25")
"""Handshake-era revisions served over Streamable HTTP (2024-11-05 used HTTP+SSE)."""
DEFAULT_LEGACY_VERSION: Final = "2025-03-26"
"""What a legacy request without MCP-Protocol-Version is taken to speak (transport spec)."""
SUPPORTED_VERSIONS: Final = (*LEGACY_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
MODERN: Final = MODERN_PROTOCOL_VERSIONS[-1]

Era = Literal["legacy", "modern"]
RequestId = int | str


@record
class Inbound:
    """One routed, validated request (or notification when `id` is None and `is_notification`)."""

    era: Era
    version: str
    method: str
    params: dict[str, Any]
    id: RequestId | None
    is_notification: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    """The request's headers, case-insensitive (Mcp-Param-* are checked against the body)."""


def decode(raw: bytes, *, max_depth: int) -> Any:
    """Decode a request body.

    Raises:
        ProtocolError: -32700 for bytes that are not UTF-8 JSON, or JSON nested deeper than allowed.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(PARSE_ERROR, f"Parse error: {exc.msg}", http_status=400) from exc
    # Nesting needs an opening bracket a level, so a body with no more brackets than the limit
    # (nearly every request; counted in C) skips the walk.
    if raw.count(b"{") + raw.count(b"[") > max_depth and _depth_exceeds(data, max_depth):
        raise ProtocolError(PARSE_ERROR, f"Parse error: JSON nested deeper than {max_depth}",
                            http_status=400)
    return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return False


def route(data: Any, headers: Mapping[str, str], raw_headers: Iterable[tuple[str, str]]) -> Inbound:
    """Choose the era and version of a decoded body and validate it against that version.

    `headers` are case-insensitive (the request's own header mapping).

    Raises:
        ProtocolError: with the code and HTTP status the transport spec assigns.
    """
    if isinstance(data, list):
        raise ProtocolError(INVALID_REQUEST, "Batch requests are not supported", http_status=400)
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        raise ProtocolError(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message",
                            http_status=400)
    request_id = data.get("id")
    method = data.get("method")
    if "method" not in data:
        if "result" in data or "error" in data:
            return _posted_response(data, headers)
        raise ProtocolError(INVALID_REQUEST, "Invalid Request: no method",
                            request_id=request_id, http_status=400)
    if not isinstance(method, str) or not _valid_id(request_id, "id" in data):
        raise ProtocolError(INVALID_REQUEST, "Invalid Request: bad method or id", http_status=400)
    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError(INVALID_REQUEST, "Invalid Request: params must be an object",
                            request_id=request_id, http_status=400)
    is_notification = "id" not in data
    header_version = headers.get("mcp-protocol-version")
    meta = params.get("_meta")
    modern_body = isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta

    if modern_body or (header_version is not None and header_version not in LEGACY_VERSIONS
                       and header_version in MODERN_PROTOCOL_VERSIONS):
        if is_notification:
            return Inbound("modern", MODERN, method, params, None, is_notification=True)
        return _route_modern(data, method, params, request_id, headers, raw_headers)

    if header_version is not None and header_version not in LEGACY_VERSIONS:
        raise ProtocolError(
            UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
            {"supported": list(SUPPORTED_VERSIONS), "requested": header_version},
            http_status=400, request_id=request_id,
        )
    version = header_version or DEFAULT_LEGACY_VERSION
    if is_notification:
        return Inbound("legacy", version, method, params, None, is_notification=True)
    if method == "initialize":
        requested = params.get("protocolVersion")
        version = requested if requested in LEGACY_VERSIONS else LATEST_HANDSHAKE_VERSION
    _validate(method, version, params, request_id, "legacy")
    return Inbound("legacy", version, method, params, request_id, headers=headers)


def _valid_id(value: Any, present: bool) -> bool:
    if not present:
        return True
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _posted_response(data: dict[str, Any], headers: Mapping[str, str]) -> Inbound:
    """A JSON-RPC response posted by a client: accepted (legacy era), refused (modern era)."""
    if headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS:
        raise ProtocolError(INVALID_REQUEST, "Clients must not send JSON-RPC responses",
                            http_status=400)
    return Inbound("legacy", DEFAULT_LEGACY_VERSION, "", {}, None, is_notification=True)


def _modern_error(code: int, message: str, data: Any = None,
                  request_id: RequestId | None = None) -> ProtocolError:
    """A modern-era rejection: its HTTP status comes from the SDK's code -> status table."""
    return ProtocolError(code, message, data, request_id=request_id,
                         http_status=ERROR_CODE_HTTP_STATUS.get(code, 200))


def _route_modern(data: dict[str, Any], method: str, params: dict[str, Any],
                  request_id: RequestId | None, headers: Mapping[str, str],
                  raw_headers: Iterable[tuple[str, str]]) -> Inbound:
    duplicated = find_duplicated_routing_header(raw_headers)
    if duplicated is not None:
        raise _modern_error(HEADER_MISMATCH, f"The {duplicated} header is given more than once",
                            request_id=request_id)
    verdict = classify_inbound_request(data, headers=headers)
    if isinstance(verdict, InboundLadderRejection):
        data_out = verdict.data
        if verdict.code == UNSUPPORTED_PROTOCOL_VERSION and isinstance(data_out, dict):
            data_out = {**data_out, "supported": list(MODERN_PROTOCOL_VERSIONS)}
        raise _modern_error(verdict.code, verdict.message, data_out, request_id)
    _validate(method, verdict.protocol_version, params, request_id, "modern")
    return Inbound("modern", verdict.protocol_version, method, params, request_id,
                   headers=headers)


_NO_REQUIRED_PARAMS: Final = frozenset({"tools/list", "resources/list",
                                        "resources/templates/list", "prompts/list", "ping"})


def plainly_valid(method: str, params: dict[str, Any]) -> bool:
    """Params of a shape every legacy version accepts, so the pydantic check (about 25 us, on
    every call) can be skipped: no params for a listing or ping, or just a tool name and an
    arguments object for tools/call (the tool's own schema checks the arguments). Modern
    requests always carry `_meta`, so they are always checked."""
    if not params:
        return method in _NO_REQUIRED_PARAMS
    return (method == "tools/call" and params.keys() <= _CALL_KEYS
            and type(params.get("name")) is str and type(params.get("arguments", {})) is dict)


_CALL_KEYS: Final = frozenset({"name", "arguments"})


def _validate(method: str, version: str, params: dict[str, Any], request_id: RequestId | None,
              era: Era) -> None:
    if era == "legacy" and plainly_valid(method, params):
        return
    try:
        validate_client_request(method, version, params)
    except KeyError:
        error = ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}", method,
                              request_id=request_id)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                    for e in exc.errors()[:10]]
        error = ProtocolError(INVALID_PARAMS, "Invalid params", {"problems": problems},
                              request_id=request_id)
    else:
        return
    if era == "modern":
        error.http_status = ERROR_CODE_HTTP_STATUS.get(error.code, 200)
    raise error




@record
class Envelope:
    """What a decoded body says it is, read without judging it: enough to decide whether the
    request needs a credential, and which id an error answers."""

    method: str
    params: Any
    id: RequestId | None
    """The request's id when it is usable in an answer (an integer or a string)."""

    @property
    def tool(self) -> str | None:
        """The tool a tools/call names, if it names one."""
        name = self.params.get("name") if isinstance(self.params, dict) else None
        return name if self.method == "tools/call" and isinstance(name, str) else None


def peek(data: Any) -> Envelope:
    """The envelope of any decoded body; never raises."""
    if not isinstance(data, dict):
        return Envelope("", None, None)
    method, request_id = data.get("method"), data.get("id")
    return Envelope(method if isinstance(method, str) else "", data.get("params"),
                    request_id if _valid_id(request_id, True) else None)


@record
class Parsed:
    """A request parsed and routed: its envelope, and either the routed request or why not."""

    envelope: Envelope
    inbound: Inbound | None = None
    rejection: ProtocolError | None = None


def parse(data: Any, headers: Mapping[str, str],
          raw_headers: Iterable[tuple[str, str]]) -> Parsed:
    """Route a decoded body, keeping a refusal to answer once the caller is known (a request that
    needs a credential and has none is answered 401 first, whatever else is wrong with it)."""
    envelope = peek(data)
    try:
        return Parsed(envelope, route(data, headers, raw_headers))
    except ProtocolError as refused:
        if refused.request_id is None:
            refused.request_id = envelope.id
        return Parsed(envelope, rejection=refused)
