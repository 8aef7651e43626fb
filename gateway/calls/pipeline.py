"""One MCP method call, start to finish: initialize, ping, server/discover, tools/list, tools/call.

Orchestrates the pure core (registry, templates, shaping, auth) and the upstream edge. Protocol
failures raise ProtocolError; tool failures come back as isError results; auth failures raise
AuthError before any upstream request is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcp_types.jsonrpc import INVALID_PARAMS

from gateway import __version__
from gateway.auth.principal import Principal, require_scopes
from gateway.calls.derive import OPERATORS, active_conditions, aggregate, matches
from gateway.calls.lookups import fill
from gateway.calls.redaction import Pseudonymiser, memoised, redact
from gateway.calls.shaping import apply_budget, render, render_error, select
from gateway.errors import AuthError, ProtocolError, ResponseShapeError, ToolExecutionError
from gateway.protocol.envelope import SUPPORTED_VERSIONS, Inbound
from gateway.protocol.sdk_inbound import ERROR_CODE_HTTP_STATUS, validate_mcp_param_headers
from gateway.settings import Settings
from gateway.spec.compiled import CompiledPrompt, CompiledRequest, CompiledService, CompiledTool
from gateway.spec.jmes import search
from gateway.spec.templates import ABSENT, RenderContext, Template, render_value
from gateway.spec.templates import render as render_template
from gateway.upstream.client import Upstream, UpstreamResponse
from gateway.writes.execution import WriteCalls

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
    reusable: Any = None
    """A key under which the shaped result may be reused for the same service and version
    (results that depend only on the caller's scopes, like tools/list)."""
    structured: bytes | None = None
    """The JSON of `result["structuredContent"]`, already encoded (the budget measured it).
    Set only for the default tool-call shape, which needs no per-call surface check."""


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


def needs_principal(method: str, params: Any, service: CompiledService) -> bool:
    """Whether a request must carry a valid credential (checked before anything else)."""
    if (method in ANONYMOUS_METHODS or method.startswith("notifications/") or not method
            or not service.spec.auth.required):
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
        self._pseudonym_of = memoised(settings.pseudonym_memo_size)

    async def handle(self, inbound: Inbound, service: CompiledService, principal: Principal,
                     *, traceparent: str | None = None,
                     headers: Mapping[str, str] | None = None) -> CallOutcome:
        """Raises:
            ProtocolError: an unknown method or tool, or invalid arguments.
            AuthError: the tool needs a credential or scope the principal lacks.
        """
        method = inbound.method
        if method == "tools/call":
            return await self.call_tool(inbound.params, service, principal,
                                        traceparent=traceparent,
                                        headers=headers if inbound.era == "modern" else None)
        if method == "tools/list":
            return CallOutcome({"tools": service.tools_for(principal.scopes)},
                               ttl_ms=TOOLS_LIST_TTL_MS, reusable=("tools", principal.scopes))
        if method == "resources/read" and service.resources:
            return await self.read_resource(inbound.params, service, principal,
                                            traceparent=traceparent)
        if method == "resources/list" and service.resources:
            return CallOutcome({"resources": service.resources_for(principal.scopes,
                                                                   templated=False)},
                               ttl_ms=TOOLS_LIST_TTL_MS)
        if method == "resources/templates/list" and service.resources:
            return CallOutcome({"resourceTemplates": service.resources_for(principal.scopes,
                                                                           templated=True)},
                               ttl_ms=TOOLS_LIST_TTL_MS)
        if method == "prompts/list" and service.prompts:
            return CallOutcome({"prompts": service.prompts_for(principal.scopes)},
                               ttl_ms=TOOLS_LIST_TTL_MS)
        if method == "prompts/get" and service.prompts:
            return self.get_prompt(inbound.params, service, principal)
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
        if method == "completion/complete" and "completions" in capabilities(service):
            # Arguments here are free text, so there is nothing to suggest; the capability is
            # still served so clients can ask.
            return CallOutcome({"completion": {"values": [], "total": 0, "hasMore": False}})
        raise ProtocolError(-32601, f"Method not found: {method}", method,
                            request_id=inbound.id)

    async def call_tool(self, params: dict[str, Any], service: CompiledService,
                        principal: Principal, *, traceparent: str | None,
                        headers: Mapping[str, str] | None = None) -> CallOutcome:
        name = params.get("name")
        tool = service.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name}", {"tool": name})
        if not tool.anonymous:
            if principal.anonymous:
                raise AuthError(f"The tool {tool.name} needs a credential")
            require_scopes(principal, tool.scopes, f"The tool {tool.name}")
        if tool.param_headers and headers is not None:
            # 2026-07-28: arguments mirrored into Mcp-Param-* headers must agree with the body.
            rejected = validate_mcp_param_headers(tool.input_schema,
                                                  params.get("arguments") or {}, headers)
            if rejected is not None:
                raise ProtocolError(rejected.code, rejected.message, rejected.data,
                                    http_status=ERROR_CODE_HTTP_STATUS.get(rejected.code, 400))
        arguments = validated_arguments(tool, params.get("arguments"))
        self._check_pii_gates(tool, principal, arguments)
        redact = self._redactor(tool, principal)
        try:
            shaped, status = await self._run(tool, service, principal, arguments, redact,
                                             traceparent)
        except ToolExecutionError as exc:
            status = getattr(exc, "status", None)
            return CallOutcome(render_error(redact(exc.message)), tool.name, status)
        result, encoded = self._budgeted(tool, shaped)
        rendered = render(result, encoded)
        if tool.content is not None:
            ctx = RenderContext(arguments, principal_fields(principal), self._clock())
            rendered["content"] = render_value(tool.content, ctx)
            return CallOutcome(rendered, tool.name, status)
        return CallOutcome(rendered, tool.name, status, structured=encoded)

    async def read_resource(self, params: dict[str, Any], service: CompiledService,
                            principal: Principal, *, traceparent: str | None) -> CallOutcome:
        """resources/read: the URI picks the resource and gives its arguments.

        Raises:
            ProtocolError: -32602 for an unknown URI, bad URI parts, a broken rule or an upstream
                failure (resources have no error result of their own).
        """
        uri = params.get("uri")
        for resource in service.resources.values():
            found = resource.match(uri) if isinstance(uri, str) else None
            if found is not None:
                break
        else:
            raise ProtocolError(INVALID_PARAMS, f"Resource not found: {uri}", {"uri": uri})
        tool = resource.tool
        require_scopes(principal, tool.scopes, f"The resource {resource.spec.name}")
        arguments = validated_arguments(tool, found)
        redact = self._redactor(tool, principal)
        try:
            shaped, _ = await self._run(tool, service, principal, arguments, redact, traceparent)
        except ToolExecutionError as exc:
            raise ProtocolError(INVALID_PARAMS, redact(exc.message), {"uri": uri}) from exc
        _, encoded = self._budgeted(tool, shaped)
        content: dict[str, Any] = {"uri": uri, "mimeType": resource.spec.mime_type,
                                   "text": encoded.decode()}
        ctx = RenderContext(arguments, principal_fields(principal), self._clock())
        if resource.blob is not None:
            del content["text"]
            content["blob"] = str(render_template(resource.blob, ctx))
        elif resource.text is not None:
            content["text"] = str(render_template(resource.text, ctx))
        return CallOutcome({"contents": [content]}, resource.spec.name)

    def get_prompt(self, params: dict[str, Any], service: CompiledService,
                   principal: Principal) -> CallOutcome:
        """prompts/get: the prompt's messages with its arguments filled in.

        Raises:
            ProtocolError: -32602 for an unknown prompt, or a missing, unknown or bad argument.
        """
        name = params.get("name")
        prompt = service.prompts.get(name) if isinstance(name, str) else None
        if prompt is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown prompt: {name}", {"prompt": name})
        require_scopes(principal, prompt.scopes, f"The prompt {prompt.spec.name}")
        given = params.get("arguments") or {}
        problems = prompt_problems(prompt, given)
        if problems:
            raise ProtocolError(INVALID_PARAMS, f"Invalid arguments for prompt {name}",
                                {"prompt": name, "problems": problems})
        ctx = RenderContext({k: v for k, v in given.items() if v != ""}, {}, self._clock())
        messages = []
        for role, template in prompt.messages:
            if isinstance(template, Template):
                text = render_template(template, ctx)
                block: Any = {"type": "text", "text": "" if text is ABSENT else str(text)}
            else:
                block = render_value(template, ctx)
            messages.append({"role": role, "content": block})
        result: dict[str, Any] = {"messages": messages}
        if prompt.spec.description:
            result["description"] = prompt.spec.description
        return CallOutcome(result, prompt.spec.name)

    async def _run(self, tool: CompiledTool, service: CompiledService, principal: Principal,
                   arguments: dict[str, Any], redact: Callable[[Any], Any],
                   traceparent: str | None) -> tuple[dict[str, Any], int | None]:
        """The shaped (selected, redacted) result of one tool run, and the upstream status.

        Raises:
            ToolExecutionError: a broken rule, or any upstream failure.
        """
        ctx = RenderContext(arguments, principal_fields(principal), self._clock())
        check_rules(tool, ctx)

        async def send(request: CompiledRequest, in_ctx: RenderContext) -> Any:
            return (await self._send(request, service, principal, in_ctx, traceparent)).body

        if tool.is_write:
            written = await self._writes.call(tool, service, principal, ctx, redact,
                                              traceparent=traceparent)
            return written.result, written.upstream_status
        ctx = await fill(tool, ctx, send)
        status: int | None = None
        if tool.result is not None:
            body: Any = render_value(tool.result, ctx)
        elif tool.collect is not None:
            body = await self._derive(tool, service, principal, ctx, traceparent)
        else:
            assert tool.request is not None  # noqa: S101 - one source per tool
            response = await self._send(tool.request, service, principal, ctx, traceparent)
            status, body = response.status, response.body
        shaped = redact(select(tool.select, body))
        if tool.empty_message is not None and all(v in (None, [], {}) for v in shaped.values()):
            raise ToolExecutionError(str(render_value(tool.empty_message, ctx)))
        if tool.extra:
            shaped = {**shaped, **render_value(tool.extra, ctx)}
        return shaped, status

    def _budgeted(self, tool: CompiledTool, shaped: dict[str, Any]
                  ) -> tuple[dict[str, Any], bytes]:
        return apply_budget(shaped, tool.budget,
                            default_items=self._settings.max_result_items,
                            default_bytes=self._settings.max_result_bytes,
                            paging_hint=tool.paging_hint)

    def _check_pii_gates(self, tool: CompiledTool, principal: Principal,
                         arguments: dict[str, Any]) -> None:
        """Tools that are all personal data, and arguments that search by it, need the scope."""
        if tool.pii_required and tool.pii_scope:
            require_scopes(principal, frozenset({tool.pii_scope}),
                           f"The tool {tool.name} (personal data)")
        for path, scope in tool.pii_arguments.items():
            if _given(arguments, path):
                what = "Searching by" if scope == tool.pii_scope else "Setting"
                require_scopes(principal, frozenset({scope}),
                               f"{what} {'.'.join(path)} in {tool.name}")

    def _redactor(self, tool: CompiledTool, principal: Principal) -> Callable[[Any], Any]:
        rules = tool.redaction
        if rules is None or (tool.pii_scope is not None and tool.pii_scope in principal.scopes):
            return _identity
        pseudonym = Pseudonymiser(self._pseudonym_key, principal.account, self._pseudonym_of)
        return lambda value: redact(value, rules, pseudonym)

    async def _send(self, request: CompiledRequest, service: CompiledService,
                    principal: Principal, ctx: RenderContext, traceparent: str | None,
                    extra_query: dict[str, Any] | None = None) -> UpstreamResponse:
        return await self._upstream.send_spec(request, service.spec, ctx, principal.token,
                                              traceparent=traceparent, extra_query=extra_query)

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
            if (collect.page_param is None or not found
                    or (collect.stop_when is not None and search(collect.stop_when, body))):
                complete = len(items) <= collect.max_items
                items = items[:collect.max_items]
                break
            if len(items) >= collect.max_items:
                items = items[:collect.max_items]
                break
            page += 1
        conditions = active_conditions(tool.conditions, ctx)
        kept = [item for item in items if matches(item, conditions)]
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


def _given(arguments: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether the call gives a value at `path` (an argument, or a key of its objects)."""
    value = arguments.get(path[0])
    if len(path) == 1:
        return value not in (None, "", [])
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, dict) and item.get(path[1]) not in (None, "", [])
               for item in items)


def principal_fields(principal: Principal) -> dict[str, Any]:
    """What templates see as {principal.<field>}."""
    return {**principal.extra, "account": principal.account, "subject": principal.subject}


def check_rules(tool: CompiledTool, ctx: RenderContext) -> None:
    """Raises:
        ToolExecutionError: the first rule the call breaks, in the rule's own words.
    """
    for check in tool.checks:
        value = render_value(check.value, ctx)
        if value is ABSENT:
            continue
        than = render_value(check.than, ctx)
        if than is ABSENT:
            continue  # nothing to compare with (e.g. no grant list for this kind of token)
        if not OPERATORS[check.op](value, than):
            message = render_value(check.message, ctx)
            raise ToolExecutionError(f"Refused: {message}" if message is not ABSENT
                                     else "Refused: the arguments break a rule of this tool.")


def prompt_problems(prompt: CompiledPrompt, given: Any) -> list[str]:
    """Every problem with a prompt's arguments: unknown, missing, malformed."""
    if not isinstance(given, dict):
        return ["arguments: must be an object of strings"]
    declared = {a.name: a for a in prompt.spec.arguments}
    problems = [f"{name}: unknown argument" for name in given if name not in declared]
    for argument in prompt.spec.arguments:
        value = given.get(argument.name)
        if value is None or value == "":
            if argument.required:
                problems.append(f"{argument.name}: required")
            continue
        if not isinstance(value, str):
            problems.append(f"{argument.name}: must be a string")
        elif len(value) > argument.max_length:
            problems.append(f"{argument.name}: longer than {argument.max_length} characters")
        elif (pattern := prompt.patterns.get(argument.name)) and not pattern.fullmatch(value):
            problems.append(f"{argument.name}: does not match {pattern.pattern}")
    return problems


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
