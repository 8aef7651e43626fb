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
from gateway.derive import active_conditions, aggregate, matches
from gateway.errors import AuthError, ProtocolError, ResponseShapeError, ToolExecutionError
from gateway.jmes import search
from gateway.lookups import fill
from gateway.protocol import SUPPORTED_VERSIONS, Inbound
from gateway.redaction import Pseudonymiser, redact
from gateway.registry import CompiledRequest, CompiledService, CompiledTool
from gateway.settings import Settings
from gateway.shaping import apply_budget, paging_hint, render, render_error, select
from gateway.templates import RenderContext, render_value
from gateway.upstream import Upstream, UpstreamResponse, build_request
from gateway.write_calls import WriteCalls

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

    def __init__(self, settings: Settings, upstream: Upstream, clock: Callable[[], datetime],
                 writes: WriteCalls, pseudonym_key: bytes) -> None:
        self._settings = settings
        self._upstream = upstream
        self._clock = clock
        self._writes = writes
        self._pseudonym_key = pseudonym_key

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
        self._check_pii_gates(tool, principal, arguments)
        ctx = RenderContext(arguments, {"account": principal.account,
                                        "subject": principal.subject}, self._clock())
        redact = self._redactor(tool, principal)

        async def send(request: CompiledRequest, in_ctx: RenderContext) -> Any:
            return (await self._send(request, service, principal, in_ctx, traceparent)).body

        upstream_status: int | None = None
        try:
            if tool.is_write:
                written = await self._writes.call(tool, service, principal, ctx, redact,
                                                  traceparent=traceparent)
                shaped = written.result
                upstream_status = written.upstream_status
            else:
                ctx = await fill(tool, ctx, send)
                if tool.result is not None:
                    body: Any = render_value(tool.result, ctx)
                elif tool.collect is not None:
                    body = await self._derive(tool, service, principal, ctx, traceparent)
                else:
                    assert tool.request is not None  # noqa: S101 - one source per tool
                    response = await self._send(tool.request, service, principal, ctx,
                                                traceparent)
                    upstream_status = response.status
                    body = response.body
                shaped = redact(select(tool.select, body))
            result, encoded = apply_budget(
                shaped, tool.budget,
                default_items=self._settings.max_result_items,
                default_bytes=self._settings.max_result_bytes,
                paging_hint=paging_hint(set(tool.spec.input)),
            )
            return CallOutcome(render(result, encoded), tool.name, upstream_status)
        except ToolExecutionError as exc:
            status = getattr(exc, "status", upstream_status)
            return CallOutcome(render_error(redact(exc.message)), tool.name, status)

    def _check_pii_gates(self, tool: CompiledTool, principal: Principal,
                         arguments: dict[str, Any]) -> None:
        """Tools that are all personal data, and arguments that search by it, need the scope."""
        if tool.pii_required and tool.pii_scope:
            require_scopes(principal, frozenset({tool.pii_scope}),
                           f"The tool {tool.name} (personal data)")
        for argument, scope in tool.pii_arguments.items():
            if arguments.get(argument) not in (None, "", []):
                require_scopes(principal, frozenset({scope}),
                               f"Searching {tool.name} by {argument}")

    def _redactor(self, tool: CompiledTool, principal: Principal) -> Callable[[Any], Any]:
        rules = tool.redaction
        if rules is None or (tool.pii_scope is not None and tool.pii_scope in principal.scopes):
            return _identity
        pseudonym = Pseudonymiser(self._pseudonym_key, principal.account)
        return lambda value: redact(value, rules, pseudonym)

    async def _send(self, request: CompiledRequest, service: CompiledService,
                    principal: Principal, ctx: RenderContext, traceparent: str | None,
                    extra_query: dict[str, Any] | None = None) -> UpstreamResponse:
        rendered = build_request(request, service.spec, ctx, principal.token,
                                 traceparent=traceparent, extra_query=extra_query)
        return await self._upstream.send(
            rendered, timeout_s=service.spec.upstream.timeout_s,
            message_keys=tuple(service.spec.upstream.error_message))

    async def _derive(self, tool: CompiledTool, service: CompiledService, principal: Principal,
                      ctx: RenderContext, traceparent: str | None) -> dict[str, Any]:
        """Collect items page by page (bounded), then filter and aggregate them."""
        collect = tool.collect
        assert collect is not None  # noqa: S101 - only called for collect tools
        items: list[Any] = []
        pages = 0
        complete = False
        page = collect.page_start
        while pages < collect.max_pages:
            extra = {collect.page_param: page} if collect.page_param else None
            body = (await self._send(collect.request, service, principal, ctx, traceparent,
                                     extra)).body
            pages += 1
            found = search(collect.items, body)
            if found is None:
                found = []
            if not isinstance(found, list):
                raise ResponseShapeError("The upstream page did not hold a list of items.")
            items.extend(found)
            if len(items) >= collect.max_items:
                items = items[:collect.max_items]
                break
            if (collect.page_param is None or not found
                    or (collect.stop_when is not None and search(collect.stop_when, body))):
                complete = True
                break
            page += 1
        kept = [item for item in items
                if matches(item, active_conditions(tool.conditions, ctx))]
        coverage: dict[str, Any] = {"pages_read": pages, "items_scanned": len(items),
                                    "complete": complete}
        if not complete:
            coverage["note"] = (f"Only the first {pages} page(s) were read; narrow the date "
                                "window or filters for a complete answer.")
        if tool.aggregate is not None:
            try:
                summary = aggregate(kept, tool.aggregate, ctx)
            except ValueError as exc:
                raise ToolExecutionError(str(exc)) from exc
            return {**summary, "items_matched": len(kept), **coverage}
        limit = render_value(collect.limit, ctx) if collect.limit is not None else None
        shown = kept[:limit] if isinstance(limit, int) and limit >= 0 else kept
        return {"items": shown, "items_matched": len(kept), **coverage}


def _identity(value: Any) -> Any:
    return value


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
