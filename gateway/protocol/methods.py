"""The method table: what each MCP method does with a routed request. Pure.

Methods answered from the compiled service alone (initialize, server/discover, ping, the lists,
completion) are here; the three that run something (tools/call, resources/read, prompts/get) find
their target, refuse what the protocol refuses, and hand over to the `Handlers` the app passes in
(the call pipeline), so this module never imports what runs a call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from gateway import __version__
from gateway.calls.context import Caller
from gateway.errors import INVALID_PARAMS, METHOD_NOT_FOUND, ProtocolError
from gateway.protocol.envelope import SUPPORTED_VERSIONS, Envelope, Inbound
from gateway.protocol.paging import LIST_METHODS, Lists
from gateway.protocol.sdk_inbound import ERROR_CODE_HTTP_STATUS, validate_mcp_param_headers
from gateway.records import record
from gateway.spec.compiled import CompiledPrompt, CompiledResource, CompiledService, CompiledTool

LIST_TTL_MS: Final = 60_000
DISCOVER_TTL_MS: Final = 300_000


@record
class Outcome:
    """A method's answer, and what the endpoint needs to log and encode it."""

    result: dict[str, Any]
    target: str | None = None
    """The tool, resource or prompt the method ran."""
    upstream_status: int | None = None
    error: str | None = None
    """For a tool error: its kind, for metrics (upstream_error, busy, rate_limited...)."""
    ttl_ms: int = 0
    cache_scope: str = "private"
    reusable: Any = None
    """A key under which the shaped result may be reused for the same service and version
    (results that depend only on the caller's scopes, like a page of a list)."""
    structured: bytes | None = None
    """A successful tool result in its default shape, as the JSON its budget measured: the
    reply writes it as structuredContent and, quoted, as the text content (`result` holds the
    rest). Its surface is known to pass, so it has no per-call check."""


@record
class MethodCall:
    """One routed request to one service by one verified caller."""

    inbound: Inbound
    service: CompiledService
    caller: Caller
    lists: Lists
    """Where the list methods find their pages."""

    @property
    def params(self) -> dict[str, Any]:
        return self.inbound.params


class Handlers(Protocol):
    """What runs the methods that reach an upstream or render templates (the call pipeline)."""

    async def call_tool(self, call: MethodCall, tool: CompiledTool,
                        arguments: Any) -> Outcome: ...

    async def read_resource(self, call: MethodCall, resource: CompiledResource,
                            arguments: dict[str, str]) -> Outcome: ...

    def get_prompt(self, call: MethodCall, prompt: CompiledPrompt, arguments: Any) -> Outcome: ...


Method = Callable[[Handlers, MethodCall], Awaitable[Outcome]]


def server_info(service: CompiledService) -> dict[str, Any]:
    return {"name": f"mcp-gateway/{service.name}", "title": service.spec.title,
            "version": __version__}


def capabilities(service: CompiledService) -> dict[str, Any]:
    caps: dict[str, Any] = {}
    if service.tools:
        caps["tools"] = {"listChanged": False}
    if service.resources:
        caps["resources"] = {"listChanged": False, "subscribe": False}
    if service.prompts:
        caps["prompts"] = {"listChanged": False}
    if service.prompts or any(r.templated for r in service.resources.values()):
        caps["completions"] = {}
    return caps


async def _initialize(_handlers: Handlers, call: MethodCall) -> Outcome:
    service = call.service
    result: dict[str, Any] = {"protocolVersion": call.inbound.version,
                              "capabilities": capabilities(service),
                              "serverInfo": server_info(service)}
    if service.spec.instructions:
        result["instructions"] = service.spec.instructions
    return Outcome(result)


async def _discover(_handlers: Handlers, call: MethodCall) -> Outcome:
    service = call.service
    result: dict[str, Any] = {"supportedVersions": list(SUPPORTED_VERSIONS),
                              "capabilities": capabilities(service)}
    if service.spec.instructions:
        result["instructions"] = service.spec.instructions
    return Outcome(result, ttl_ms=DISCOVER_TTL_MS, cache_scope="public")


async def _ping(_handlers: Handlers, _call: MethodCall) -> Outcome:
    return Outcome({})


async def _complete(_handlers: Handlers, _call: MethodCall) -> Outcome:
    # Arguments here are free text, so there is nothing to suggest; the capability is still
    # served so clients can ask.
    return Outcome({"completion": {"values": [], "total": 0, "hasMore": False}})


async def _list(_handlers: Handlers, call: MethodCall) -> Outcome:
    """One page of tools/list, resources/list, resources/templates/list or prompts/list.

    Raises:
        ProtocolError: -32602 for a cursor that does not continue the caller's list.
    """
    method, scopes = call.inbound.method, call.caller.scopes
    page = call.lists.page(call.service, method, scopes, call.params.get("cursor"))
    result: dict[str, Any] = {LIST_METHODS[method].key: page.entries}
    if page.next_cursor is not None:
        result["nextCursor"] = page.next_cursor
    return Outcome(result, ttl_ms=LIST_TTL_MS, reusable=(method, scopes, page.offset))


async def _call_tool(handlers: Handlers, call: MethodCall) -> Outcome:
    """Raises:
        ProtocolError: an unknown tool, or Mcp-Param-* headers that disagree with the body.
    """
    name = call.params.get("name")
    tool = call.service.tools.get(name) if isinstance(name, str) else None
    if tool is None:
        raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name}", {"tool": name})
    arguments = call.params.get("arguments")
    if tool.param_headers and call.inbound.era == "modern":
        # 2026-07-28: arguments mirrored into Mcp-Param-* headers must agree with the body.
        rejected = validate_mcp_param_headers(tool.input_schema, arguments or {},
                                              call.inbound.headers)
        if rejected is not None:
            raise ProtocolError(rejected.code, rejected.message, rejected.data,
                                http_status=ERROR_CODE_HTTP_STATUS.get(rejected.code, 400))
    return await handlers.call_tool(call, tool, arguments)


async def _read_resource(handlers: Handlers, call: MethodCall) -> Outcome:
    """Raises:
        ProtocolError: -32602 for a URI no resource of the service has.
    """
    uri = call.params.get("uri")
    if isinstance(uri, str):
        for resource in call.service.resources.values():
            found = resource.match(uri)
            if found is not None:
                return await handlers.read_resource(call, resource, found)
    raise ProtocolError(INVALID_PARAMS, f"Resource not found: {uri}", {"uri": uri})


async def _get_prompt(handlers: Handlers, call: MethodCall) -> Outcome:
    """Raises:
        ProtocolError: -32602 for a prompt the service does not have.
    """
    name = call.params.get("name")
    prompt = call.service.prompts.get(name) if isinstance(name, str) else None
    if prompt is None:
        raise ProtocolError(INVALID_PARAMS, f"Unknown prompt: {name}", {"prompt": name})
    return handlers.get_prompt(call, prompt, call.params.get("arguments"))


@dataclass(frozen=True)
class Entry:
    method: Method
    served: Callable[[CompiledService], bool] = lambda _service: True
    """Whether the service offers the method (a service without prompts has no prompts/get)."""
    anonymous: bool = False
    """Answered without a credential, so a client can always connect."""


def _has_resources(service: CompiledService) -> bool:
    return bool(service.resources)


def _has_prompts(service: CompiledService) -> bool:
    return bool(service.prompts)


METHODS: Final[Mapping[str, Entry]] = {
    "initialize": Entry(_initialize, anonymous=True),
    "server/discover": Entry(_discover, anonymous=True),
    "ping": Entry(_ping, anonymous=True),
    "tools/list": Entry(_list),
    "tools/call": Entry(_call_tool),
    "resources/list": Entry(_list, _has_resources),
    "resources/templates/list": Entry(_list, _has_resources),
    "resources/read": Entry(_read_resource, _has_resources),
    "prompts/list": Entry(_list, _has_prompts),
    "prompts/get": Entry(_get_prompt, _has_prompts),
    "completion/complete": Entry(_complete, lambda s: "completions" in capabilities(s)),
}


async def dispatch(handlers: Handlers, call: MethodCall) -> Outcome:
    """Raises:
        ProtocolError: a method the service does not serve, or what the method refuses.
        AuthError: the caller lacks a credential or scope the call needs.
    """
    entry = METHODS.get(call.inbound.method)
    if entry is None or not entry.served(call.service):
        raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {call.inbound.method}",
                            call.inbound.method, request_id=call.inbound.id)
    return await entry.method(handlers, call)


def needs_credential(envelope: Envelope, service: CompiledService) -> bool:
    """Whether a request must carry a valid credential (checked before anything else)."""
    method = envelope.method
    if not method or method.startswith("notifications/") or not service.spec.auth.required:
        return False
    entry = METHODS.get(method)
    if entry is not None and entry.anonymous:
        return False
    if method == "tools/call" and isinstance(envelope.params, dict):
        tool = service.tools.get(str(envelope.params.get("name")))
        return tool is None or not tool.anonymous
    return True
