"""The call pipeline: one place where a tools/call (or a resources/read) runs, start to finish.

    authorize -> validate -> gate personal data -> (ask the client: input_required) -> check
    rules -> (write: preview or confirm, by token or by a person) -> fill lookups -> answer
    from the source (request | collect | result) -> select -> redact -> budget -> encode

It serves the methods that run something (the `Handlers` of protocol/methods.py). Failures of
the call are `isError` results the model can read; malformed requests raise ProtocolError;
missing credentials or scopes raise AuthError before anything is sent upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from gateway.auth.principal import require_scopes
from gateway.calls.arguments import check_rules, gate_personal_data, validated_arguments
from gateway.calls.collect import derived
from gateway.calls.context import Caller
from gateway.calls.lookups import fill
from gateway.calls.pages import shaped_page, whole
from gateway.calls.prompts import prompt_arguments, prompt_messages
from gateway.calls.redaction import Pseudonymiser, Redaction, memoised
from gateway.calls.rounds import Rounds
from gateway.calls.shaping import apply_budget, render_error, select
from gateway.errors import (
    INVALID_PARAMS,
    AuthError,
    CircuitOpen,
    GatewayBusy,
    ProtocolError,
    ResponseShapeError,
    ToolExecutionError,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.protocol.methods import MethodCall, Outcome
from gateway.protocol.mrtr import InputRequired, retry_of
from gateway.settings import Settings
from gateway.spec.compiled import (
    CollectSource,
    CompiledPrompt,
    CompiledRequest,
    CompiledResource,
    CompiledTool,
    RequestSource,
    ResultSource,
    Source,
)
from gateway.spec.pages import PageAnswer, PageDecoder
from gateway.spec.reads import PrunedDecoder
from gateway.spec.templates import RenderContext, render_value
from gateway.spec.templates import render as render_template
from gateway.upstream.client import Upstream
from gateway.writes.confirmations import CONFIRMATION_ARGUMENT
from gateway.writes.elicitation import HumanWrites, human_required
from gateway.writes.execution import WriteCalls, WriteOutcome

Redactor = Callable[[Any], Any]


class Calls:
    """Runs tools, resources and prompts for the method table; holds no per-request state."""

    def __init__(self, settings: Settings, upstream: Upstream, writes: WriteCalls,
                 pseudonym_key: bytes, clock: Callable[[], datetime], *,
                 state_key: bytes) -> None:
        self._settings = settings
        self._upstream = upstream
        self._writes = writes
        self._pseudonym_key = pseudonym_key
        self._pseudonym_of = memoised(settings.pseudonym_memo_size)
        self._clock = clock
        self._rounds = Rounds(state_key, self._seconds)
        self._human = HumanWrites(writes, state_key, self._seconds)

    def _seconds(self) -> float:
        return self._clock().timestamp()

    async def call_tool(self, call: MethodCall, tool: CompiledTool, arguments: Any) -> Outcome:
        """Raises:
            AuthError: the tool needs a credential or a scope the caller lacks.
            ProtocolError: -32602 for arguments that break the input schema, or a request
                state that fails its checks; -32021 for input this client cannot be asked.
        """
        caller = call.caller.calling(tool)
        authorize(tool, caller)
        given = validated_arguments(tool, arguments)
        gate_personal_data(tool, caller.scopes, given)
        redactor = self._redactor(tool, caller)
        ctx = self._rounds.gather(tool.rounds, call.inbound, tool.name, caller,
                                  caller.render_context(given, self._clock()))
        if isinstance(ctx, InputRequired):
            return Outcome(ctx.result, tool.name)
        try:
            if tool.is_write:
                check_rules(tool, ctx)
                written = await self._write(call, tool, caller, ctx, redactor)
                if isinstance(written, InputRequired):
                    return Outcome(written.result, tool.name)
                shaped, status = written.result, written.upstream_status
            else:
                shaped, status = await self._run(tool, caller, ctx, redactor)
        except ToolExecutionError as failed:
            return Outcome(render_error(redactor(failed.message), failed.retry_after_s),
                           tool.name, getattr(failed, "status", None), error=error_kind(failed))
        result, encoded = self._budgeted(tool, shaped)
        if tool.shape.content is not None:
            return Outcome({"content": render_value(tool.shape.content, ctx),
                            "structuredContent": result, "isError": False}, tool.name, status)
        return Outcome({"isError": False}, tool.name, status, structured=encoded)

    async def read_resource(self, call: MethodCall, resource: CompiledResource,
                            arguments: dict[str, str]) -> Outcome:
        """resources/read: the URI gave the resource and its arguments.

        Raises:
            ProtocolError: -32602 for bad URI parts, a broken rule or an upstream failure
                (resources have no error result of their own).
        """
        tool, uri = resource.tool, call.params.get("uri")
        caller = call.caller.calling(tool)
        require_scopes(caller.scopes, tool.scopes, f"The resource {resource.spec.name}")
        given = validated_arguments(tool, arguments)
        redactor = self._redactor(tool, caller)
        ctx = caller.render_context(given, self._clock())
        try:
            shaped, _ = await self._run(tool, caller, ctx, redactor)
        except ToolExecutionError as failed:
            raise ProtocolError(INVALID_PARAMS, redactor(failed.message), {"uri": uri}) from failed
        _, encoded = self._budgeted(tool, shaped)
        content: dict[str, Any] = {"uri": uri, "mimeType": resource.spec.mime_type,
                                   "text": encoded.decode()}
        if resource.blob is not None:
            del content["text"]
            content["blob"] = str(render_template(resource.blob, ctx))
        elif resource.text is not None:
            content["text"] = str(render_template(resource.text, ctx))
        return Outcome({"contents": [content]}, resource.spec.name)

    def get_prompt(self, call: MethodCall, prompt: CompiledPrompt, arguments: Any) -> Outcome:
        """Raises:
            InsufficientScope: the prompt needs a scope the caller lacks.
            ProtocolError: -32602 for a missing, unknown or bad argument, or a request state
                that fails its checks; -32021 for input this client cannot be asked.
        """
        require_scopes(call.caller.scopes, prompt.scopes, f"The prompt {prompt.spec.name}")
        now = self._clock()
        ctx = self._rounds.gather(prompt.rounds, call.inbound, f"prompt {prompt.spec.name}",
                                  call.caller,
                                  RenderContext(prompt_arguments(prompt, arguments), {}, now))
        if isinstance(ctx, InputRequired):
            return Outcome(ctx.result, prompt.spec.name)
        return Outcome(prompt_messages(prompt, arguments, now, ctx.inputs), prompt.spec.name)

    async def _write(self, call: MethodCall, tool: CompiledTool, caller: Caller,
                     ctx: RenderContext, redactor: Redactor) -> WriteOutcome | InputRequired:
        """A write confirmed by a person when the client can ask one (and no token is given),
        else by a confirmation token, unless the service wants a person for this tool.

        Raises:
            ToolExecutionError: what the write refuses or fails with.
        """
        retry = retry_of(call.inbound)
        token_given = ctx.arguments.get(CONFIRMATION_ARGUMENT) is not None
        if not token_given and retry.can_answer("elicitation/create"):
            return await self._human.call(tool, caller, ctx, redactor, retry,
                                          call.service.spec.title)
        if tool.name in caller.writes.require_human:
            raise ToolExecutionError(human_required(tool.name, token_given))
        return await self._writes.call(tool, caller, ctx, redactor)

    async def _run(self, tool: CompiledTool, caller: Caller, ctx: RenderContext,
                   redactor: Redaction) -> tuple[dict[str, Any], int | None]:
        """The shaped (selected, redacted) result of one run, and the upstream status.

        Raises:
            ToolExecutionError: a broken rule, or any upstream failure.
        """
        check_rules(tool, ctx)
        ctx = await fill(tool, ctx, self._body_sender(caller))
        body, status = await self._answer(tool.source, caller, ctx, tool.shape.pruned)
        shaped = None
        extra = render_value(tool.shape.extra, ctx) if tool.shape.extra else None
        if isinstance(body, PageAnswer):  # a page of rows, kept as bytes
            shaped = shaped_page(body, redactor, tool.shape.budget.max_bytes
                                 or self._settings.max_result_bytes, extra)
            if shaped is None:  # the pass declined: the answer as every other one is
                body = whole(body)
        if shaped is None:
            shaped = redactor(select(tool.shape.select, body))
        empty = tool.shape.empty_message
        if empty is not None and all(v in (None, [], {}) for v in shaped.values()):
            raise ToolExecutionError(str(render_value(empty, ctx)))
        if extra:
            shaped = {**shaped, **extra}
        return shaped, status

    async def _answer(self, source: Source, caller: Caller, ctx: RenderContext,
                      pruned: PageDecoder | PrunedDecoder | None) -> tuple[Any, int | None]:
        """The source's body (and upstream status, for a single request); a single answer is
        decoded `pruned` to what the selection reads (a PageAnswer: its rows kept as bytes)."""
        match source:
            case RequestSource(request=request):
                response = await self._upstream.send_spec(request, caller, ctx, pruned=pruned)
                if isinstance(response.body, PageAnswer):  # what the whole path needs of it
                    kept = response.body
                    return PageAnswer(kept.decoder, kept.raw, response.status,
                                      response.headers), response.status
                return response.body, response.status
            case CollectSource():
                async def page(extra: Mapping[str, Any] | None) -> Any:
                    return (await self._upstream.send_spec(source.request, caller, ctx,
                                                           extra_query=extra)).body

                return await derived(source, ctx, page, caller.progress), None
            case ResultSource(template=template):
                return render_value(template, ctx), None

    def _body_sender(self, caller: Caller) -> Callable[[CompiledRequest, RenderContext], Any]:
        async def send(request: CompiledRequest, ctx: RenderContext) -> Any:
            return (await self._upstream.send_spec(request, caller, ctx)).body

        return send

    def _budgeted(self, tool: CompiledTool, shaped: dict[str, Any]
                  ) -> tuple[dict[str, Any], bytes]:
        return apply_budget(shaped, tool.shape.budget,
                            default_items=self._settings.max_result_items,
                            default_bytes=self._settings.max_result_bytes,
                            paging_hint=tool.shape.paging_hint)

    def _redactor(self, tool: CompiledTool, caller: Caller) -> Redaction:
        pii = tool.pii
        if pii is None or pii.scope in caller.scopes:
            return NO_REDACTION
        return Redaction(pii.redaction, Pseudonymiser(self._pseudonym_key, caller.account,
                                                      self._pseudonym_of))


def authorize(tool: CompiledTool, caller: Caller) -> None:
    """Raises:
        AuthError: an anonymous caller of a tool that needs a credential.
        InsufficientScope: a scope the tool needs is missing.
    """
    if tool.anonymous:
        return
    if caller.anonymous:
        raise AuthError(f"The tool {tool.name} needs a credential")
    require_scopes(caller.scopes, tool.scopes, f"The tool {tool.name}")


NO_REDACTION = Redaction()


def error_kind(failed: ToolExecutionError) -> str:
    """What kind of tool error it was, in a word of a fixed list (a metrics label)."""
    if isinstance(failed, UpstreamError):
        return "upstream_error"
    if isinstance(failed, GatewayBusy):
        return "busy"
    if isinstance(failed, CircuitOpen):
        return "circuit_open"
    if isinstance(failed, UpstreamUnavailable):
        return "upstream_unavailable"
    if isinstance(failed, ResponseShapeError):
        return "bad_upstream_answer"
    if failed.retry_after_s is not None:
        return "rate_limited"
    return "tool_error"
