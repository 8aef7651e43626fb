"""The gateway's one exception tree. Imports nothing from the gateway.

    GatewayError
    ├── SpecError               a spec tree failed to load; carries every problem with file:line
    ├── StartupError            a configuration that cannot work (Redis, audit path)
    ├── ProtocolError           a malformed MCP request -> JSON-RPC error (status: protocol/replies)
    ├── AuthError               no usable credential -> HTTP 401 + WWW-Authenticate
    │   └── InsufficientScope   a scope is missing -> HTTP 403 + WWW-Authenticate
    ├── AuthUnavailable         the token could not be checked (introspection down) -> HTTP 503
    │   └── IntrospectionThrottled  too many unknown tokens lately -> HTTP 429/503 + Retry-After
    ├── StoreUnavailable        the limit/claim store (Redis) did not answer; writes say so
    ├── StreamClosed            the client closed a streamed answer: the call is cancelled
    ├── WireError               an upstream exchange failed (upstream/*_wire.py)
    └── ToolExecutionError      a tool call failed -> CallToolResult(isError=true)
        ├── UpstreamError       the upstream answered with a non-2xx status
        ├── UpstreamUnavailable timeout, refused connection, broken or oversized body
        │   ├── GatewayBusy     no free upstream slot in time: nothing was sent
        │   └── CircuitOpen     the upstream is failing or asked to wait: nothing was sent
        └── ResponseShapeError  a 2xx answer that is not the JSON expected

Foreign exceptions (aiohttp and httpx clients, jmespath, yaml) are translated at one boundary each
(`raise ... from`). The JSON-RPC error codes the gateway answers with are named here, once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from mcp_types import jsonrpc

PARSE_ERROR: Final = jsonrpc.PARSE_ERROR
"""-32700: the body is not JSON (or nests deeper than allowed)."""
INVALID_REQUEST: Final = jsonrpc.INVALID_REQUEST
"""-32600: not a JSON-RPC 2.0 request; also the code of HTTP-level refusals (401, 403, 415...)."""
METHOD_NOT_FOUND: Final = jsonrpc.METHOD_NOT_FOUND
"""-32601: a method the service does not serve."""
INVALID_PARAMS: Final = jsonrpc.INVALID_PARAMS
"""-32602: unknown tool, resource or prompt, arguments that break its schema or rules, or a
list cursor that does not continue the caller's list."""
INTERNAL_ERROR: Final = jsonrpc.INTERNAL_ERROR
"""-32603: the gateway failed (a bug), or the token could not be checked (with HTTP 503)."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a spec tree, located as precisely as the loader could."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class SpecError(GatewayError):
    """A spec tree is invalid. `problems` lists every problem found, not just the first."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StartupError(GatewayError):
    """The gateway cannot start with this configuration; the message names the setting and what
    is wrong, in one line (`serve` prints it and exits 2)."""


class ProtocolError(GatewayError):
    """A request that is not a valid MCP request; answered with a JSON-RPC error."""

    def __init__(
        self,
        code: int,
        message: str,
        data: Any = None,
        *,
        http_status: int | None = None,
        request_id: int | str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status
        """Forces the HTTP status; otherwise protocol.http_status picks it by era and code."""
        self.request_id = request_id
        super().__init__(message)


class AuthError(GatewayError):
    """The request carries no credential, or one that is invalid or expired (HTTP 401)."""

    def __init__(
        self,
        description: str,
        *,
        error: str | None = None,
        scope: str | None = None,
    ) -> None:
        self.description = description
        self.error = error
        """RFC 6750 error code: None when no token was sent, "invalid_token" when one was."""
        self.scope = scope
        super().__init__(description)


class InsufficientScope(AuthError):
    """The credential is valid but lacks a scope the operation needs (HTTP 403)."""

    def __init__(self, missing: list[str], operation: str) -> None:
        self.missing = missing
        self.operation = operation
        needed = " ".join(missing)
        super().__init__(
            f"{operation} needs the scope {needed}, which this token does not have",
            error="insufficient_scope",
            scope=needed,
        )


class AuthUnavailable(GatewayError):
    """The authorization server could not be asked about a token; never treated as valid."""


class IntrospectionThrottled(AuthUnavailable):
    """Too many tokens not yet known were checked lately: the token was not looked at, so this is
    no verdict on it. `bound` says whose budget ran out; `retry_after_s` when it has room."""

    def __init__(self, message: str, *, bound: Literal["address", "process"],
                 retry_after_s: float) -> None:
        self.bound = bound
        self.retry_after_s = retry_after_s
        super().__init__(message)


class StoreUnavailable(GatewayError):
    """The store of write limits and single-use claims (Redis) did not answer; the message names
    the failure by class and text (never a URL, which may carry a password)."""


class StreamClosed(GatewayError):
    """The client closed the SSE answer of a call that reports progress. Closing the stream is
    how a client cancels such a call, so the call stops (no more upstream pages are read) and
    nothing more is sent."""


WireFailure = Literal["timeout", "connect", "broken", "too_large"]


class WireError(GatewayError):
    """An upstream HTTP exchange failed before a whole answer was read."""

    def __init__(self, kind: WireFailure, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        """What the client library said, by class name (never a URL: it may carry a query)."""
        super().__init__(f"{kind}: {detail}")


class ToolExecutionError(GatewayError):
    """A tool call that failed in a way the model can read and act on."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.message = message
        self.retry_after_s = retry_after_s
        super().__init__(message)


class UpstreamError(ToolExecutionError):
    """The upstream API answered with a non-2xx status."""

    def __init__(
        self, status: int, upstream_message: str, *, retry_after_s: float | None = None
    ) -> None:
        self.status = status
        self.upstream_message = upstream_message
        super().__init__(_describe_status(status, upstream_message, retry_after_s),
                         retry_after_s=retry_after_s)


class UpstreamUnavailable(ToolExecutionError):
    """The upstream could not be reached, was too slow, or sent a body too large to accept."""

    def __init__(self, message: str, *, maybe_delivered: bool = False,
                 retry_after_s: float | None = None) -> None:
        self.maybe_delivered = maybe_delivered
        """Whether the request may have reached the upstream (a timeout, a reset after sending,
        an answer too large to read): for a write, its outcome is then unknown, not failed."""
        super().__init__(message, retry_after_s=retry_after_s)


class GatewayBusy(UpstreamUnavailable):
    """Every upstream slot of the tool or its service stayed taken for the bounded wait: the
    gateway is busy, the upstream was not asked (so it says nothing of the upstream)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class CircuitOpen(UpstreamUnavailable):
    """Recent calls show the upstream failing, or it asked to wait (Retry-After): the request
    was not sent, and `retry_after_s` says when it may be."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class ResponseShapeError(ToolExecutionError):
    """The upstream answered 2xx, but not with the JSON the tool's spec expects."""


def _describe_status(status: int, upstream_message: str, retry_after_s: float | None) -> str:
    said = f": {upstream_message.rstrip('.')}" if upstream_message else ""
    advice = {
        400: "Check the arguments against the tool's input schema.",
        401: "The credential was refused upstream; sign in again or use a new token.",
        403: "The credential is not allowed to do this upstream.",
        404: "Nothing exists with that id; list the items first to get a valid id.",
        409: "The item changed meanwhile; read it again before retrying.",
        422: "The upstream rejected the values; check them and retry.",
    }.get(status)
    wait = (f" in {max(1, math.ceil(retry_after_s))} seconds" if retry_after_s is not None
            else " later")
    if status == 429:
        advice = f"The upstream rate limit was reached; retry{wait}."
    elif status >= 500:
        advice = f"The upstream service failed; retry{wait}."
    return f"Upstream answered HTTP {status}{said}. {advice or ''}".rstrip()
