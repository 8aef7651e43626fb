"""One MCP method call, start to finish: initialize, ping, server/discover, tools/list, tools/call.

Orchestrates the pure core (registry, templates, shaping, auth) and the upstream edge. Protocol
failures raise ProtocolError; tool failures come back as isError results; auth failures raise
AuthError before any upstream request is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcp_types.jsonrpc import INVALID_PARAMS

from gateway import __version__
from gateway.auth import Principal, require_scopes
from gateway.errors import AuthError, ProtocolError, ToolExecutionError
from gateway.protocol import SUPPORTED_VERSIONS, Inbound
from gateway.registry import CompiledService, CompiledTool
from gateway.settings import Settings
from gateway.shaping import apply_budget, paging_hint, render, render_error, select
from gateway.templates import RenderContext, render_value
from gateway.upstream import Upstream, build_request

TOOLS_LIST_TTL_MS = 60_000
DISCOVER_TTL_MS = 300_000
ANONYMOUS_METHODS = frozenset({"initialize", "ping", "server/discover"})


@dataclass(frozen=True)
class CallOutcome:
    """What the app needs to log and answer after a call."""

    result: dict[str, Any]
    tool: str | None = None
    upstream_status: int | None = None
    ttl_ms: int = 0
    cache_scope: str = "private"


def server_info(service: CompiledService) -> dict[str, Any]:
    return {"name": f"mcp-gateway/{service.name}", "title": service.spec.title,
            "version": __version__}


def capabilities(service: CompiledService) -> dict[str, Any]:
    caps: dict[str, Any] = {}
    if service.tools:
        caps["tools"] = {"listChanged": False}
    return caps


def needs_principal(method: str, params: Any, service: CompiledService) -> bool:
    """Whether a request must carry a valid credential (checked before anything else)."""
    if method in ANONYMOUS_METHODS or method.startswith("notifications/") or not method:
        return False
    if method == "tools/call" and isinstance(params, dict):
        tool = service.tools.get(str(params.get("name")))
        return tool is None or not tool.anonymous
    return True


class Dispatcher:
    """Serves the methods of one request against one service; holds no per-request state."""

    def __init__(self, settings: Settings, upstream: Upstream,
                 clock: Callable[[], datetime]) -> None:
        self._settings = settings
        self._upstream = upstream
        self._clock = clock

    async def handle(self, inbound: Inbound, service: CompiledService, principal: Principal,
                     *, traceparent: str | None = None) -> CallOutcome:
        """Raises:
            ProtocolError: an unknown method or tool, or invalid arguments.
            AuthError: the tool needs a credential or scope the principal lacks.
        """
        method = inbound.method
        if method == "tools/call":
            return await self.call_tool(inbound.params, service, principal,
                                        traceparent=traceparent)
        if method == "tools/list":
            return CallOutcome({"tools": service.tools_for(principal.scopes)},
                               ttl_ms=TOOLS_LIST_TTL_MS)
        if method == "initialize":
            result: dict[str, Any] = {"protocolVersion": inbound.version,
                                      "capabilities": capabilities(service),
                                      "serverInfo": server_info(service)}
            if service.spec.instructions:
                result["instructions"] = service.spec.instructions
            return CallOutcome(result)
        if method == "server/discover":
            result = {"supportedVersions": list(SUPPORTED_VERSIONS),
                      "capabilities": capabilities(service)}
            if service.spec.instructions:
                result["instructions"] = service.spec.instructions
            return CallOutcome(result, ttl_ms=DISCOVER_TTL_MS, cache_scope="public")
        if method == "ping":
            return CallOutcome({})
        raise ProtocolError(-32601, f"Method not found: {method}", method,
                            request_id=inbound.id)

    async def call_tool(self, params: dict[str, Any], service: CompiledService,
                        principal: Principal, *, traceparent: str | None) -> CallOutcome:
        name = params.get("name")
        tool = service.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name}", {"tool": name})
        if not tool.anonymous:
            if principal.anonymous:
                raise AuthError(f"The tool {tool.name} needs a credential")
            require_scopes(principal, tool.scopes, f"The tool {tool.name}")
        arguments = validated_arguments(tool, params.get("arguments"))
        ctx = RenderContext(arguments, {"account": principal.account,
                                        "subject": principal.subject}, self._clock())
        upstream_status: int | None = None
        try:
            if tool.result is not None:
                body: Any = render_value(tool.result, ctx)
            else:
                request = build_request(tool, service.spec, ctx, principal.token,
                                        traceparent=traceparent)
                response = await self._upstream.send(
                    request, timeout_s=service.spec.upstream.timeout_s,
                    message_keys=tuple(service.spec.upstream.error_message))
                upstream_status = response.status
                body = response.body
            shaped, encoded = apply_budget(
                select(tool.select, body), tool.budget,
                default_items=self._settings.max_result_items,
                default_bytes=self._settings.max_result_bytes,
                paging_hint=paging_hint(set(tool.spec.input)),
            )
            return CallOutcome(render(shaped, encoded), tool.name, upstream_status)
        except ToolExecutionError as exc:
            status = getattr(exc, "status", upstream_status)
            return CallOutcome(render_error(exc.message), tool.name, status)


def validated_arguments(tool: CompiledTool, arguments: Any) -> dict[str, Any]:
    """The call's arguments with defaults applied, or every problem found with them.

    Raises:
        ProtocolError: -32602 listing every argument problem.
    """
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ProtocolError(INVALID_PARAMS, "Invalid arguments: must be an object",
                            {"tool": tool.name, "problems": ["arguments: must be an object"]})
    merged = {**tool.defaults, **arguments} if tool.defaults else arguments
    problems = [_problem(e) for e in tool.validator.iter_errors(merged)]
    if problems:
        raise ProtocolError(INVALID_PARAMS, f"Invalid arguments for tool {tool.name}",
                            {"tool": tool.name, "problems": problems})
    return merged


def _problem(error: Any) -> str:
    where = "/".join(str(p) for p in error.instance_path) or "arguments"
    message = str(error.message)
    if len(message) > 200:  # the message quotes the value, which may be huge
        message = message[:200] + "…"
    return f"{where}: {message}"
