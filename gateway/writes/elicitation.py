"""Writes a person confirms in the client's own dialog (2026-07-28 clients that declare
elicitation): the first call previews the change as usual and answers `input_required`, asking
through a form-mode elicitation whether to make exactly this change; the same call retried with
the answer and the `requestState` executes once (accept) or not at all (decline, cancel).

The state carries what a confirmation token carries (tool, argument digest, subject, account,
expiry, nonce), sealed by writes/confirmations.py under the request-state key. It is the
client's to send back, so it is checked like any input: tampered, expired, replayed or another
caller's state is refused with -32602. Its nonce is claimed once in the store confirmation
tokens use, and an execution goes through WriteCalls like a token's: same write limit, same
audit records (`confirmed_by: elicitation`), same Idempotency-Key derivation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

import orjson

from gateway.calls.arguments import check_rules, gate_personal_data, validated_arguments
from gateway.calls.context import Caller
from gateway.errors import ProtocolError, ToolExecutionError
from gateway.protocol.mrtr import InputRequired, Retry, elicitation, input_required, refused_input
from gateway.spec.compiled import CompiledTool
from gateway.spec.templates import RenderContext
from gateway.writes.confirmations import ConfirmationRefused, claims_of, issue
from gateway.writes.edits import edit_fields, edited_arguments
from gateway.writes.execution import WriteCalls, WriteOutcome
from gateway.writes.previews import Redactor

PURPOSE: Final = "elicitation"
"""The `p` claim of a confirmation state (a rounds state says `input`)."""
CONFIRM: Final = "confirm"
"""The key of the elicitation in `inputRequests`, and of its one field."""
CONFIRM_FIELD: Final = {"type": "boolean", "title": "Make this change",
                        "description": "Yes sends the request above, once.", "default": False}
SCHEMA: Final = {
    "type": "object",
    "properties": {CONFIRM: CONFIRM_FIELD},
    "required": [CONFIRM],
}
MAX_VALUE_CHARS: Final = 10_000
"""Longest value shown whole in the message (an email body is shown whole)."""
MAX_LINES: Final = 60
"""Keys shown per part of the message; the rest are counted."""


class HumanWrites:
    """Runs write calls a person confirms; shares the WriteCalls of the app."""

    def __init__(self, writes: WriteCalls, key: bytes, clock: Callable[[], float]) -> None:
        self._writes = writes
        self._key = key
        self._clock = clock

    async def call(self, tool: CompiledTool, caller: Caller, ctx: RenderContext,
                   redact: Redactor, retry: Retry, service: str) -> WriteOutcome | InputRequired:
        """Ask the person (a first call, or a retry without a usable answer), or act on the
        answer. `service` is the service's title, for the message.

        Raises:
            ProtocolError: -32602 for a state that fails its checks or was used before.
            ToolExecutionError: a declined change, or what a token's execution may raise.
        """
        if retry.state is None:
            return await self._ask(tool, caller, ctx, redact, service)
        nonce, expires_at = self._opened(retry.state, tool, caller, ctx)
        answer = decision(retry.answers.get(CONFIRM))
        if answer is None:
            return await self._ask(tool, caller, ctx, redact, service)
        if answer != "accept":
            if not await self._writes.declined(tool, caller, dict(ctx.arguments), nonce,
                                               expires_at, answer):
                raise refused_input("The request state was already used.")
            raise ToolExecutionError(_NOT_MADE[answer])
        ctx, edited = _with_edits(tool, caller, ctx, retry.answers[CONFIRM].get("content"))
        try:
            return await self._writes.execute_confirmed(tool, caller, ctx, redact, nonce,
                                                        expires_at, edited)
        except ConfirmationRefused as refused:
            raise refused_input(refused.reason) from refused

    async def _ask(self, tool: CompiledTool, caller: Caller, ctx: RenderContext,
                   redact: Redactor, service: str) -> InputRequired:
        """Preview the change (its limit and audit record as for a token) and ask about it."""
        preview = (await self._writes.call(tool, caller, ctx, redact)).result
        state = issue(self._key, tool=tool.name, arguments=ctx.arguments, subject=caller.subject,
                      account=caller.account, now=self._clock(),
                      ttl_s=caller.writes.confirm_ttl_s, extra={"p": PURPOSE})
        message = confirmation_message(tool, preview, service, ctx.arguments)
        fields = edit_fields(tool, ctx.arguments)
        if fields:
            message += ("\n\nYou can change " + _and(f["title"] for f in fields.values())
                        + " in the form first: what you confirm is what is sent.")
        schema = {**SCHEMA, "properties": {CONFIRM: CONFIRM_FIELD, **fields}}
        return input_required({CONFIRM: elicitation(message, schema)}, state.token)

    def _opened(self, state: str, tool: CompiledTool, caller: Caller,
                ctx: RenderContext) -> tuple[str, int]:
        """The nonce and expiry of a confirmation state.

        Raises:
            ProtocolError: -32602 for a state that fails any check.
        """
        try:
            claims = claims_of(self._key, state, tool=tool.name, arguments=ctx.arguments,
                               subject=caller.subject, account=caller.account,
                               now=self._clock(), what="The request state")
        except ConfirmationRefused as refused:
            raise refused_input(refused.reason) from refused
        if claims.get("p") != PURPOSE:
            raise refused_input("The request state is not for this request.")
        return str(claims.get("n")), int(claims.get("e", 0))


def _with_edits(tool: CompiledTool, caller: Caller, ctx: RenderContext,
                content: Any) -> tuple[RenderContext, tuple[str, ...]]:
    """The call as the person left it in the form: their changes, checked like the call's own
    arguments (schema, rules, personal-data scopes) before anything is sent.

    Raises:
        ToolExecutionError: a change that does not pass; the confirmation stays unused.
    """
    try:
        arguments, edited = edited_arguments(tool, ctx.arguments, content)
        if not edited:
            return ctx, ()
        arguments = validated_arguments(tool, arguments)
    except (ValueError, ProtocolError) as bad:
        problems = getattr(bad, "data", None) or {}
        detail = "; ".join(problems.get("problems", [])) or str(bad)
        raise ToolExecutionError(
            f"Not executed, nothing was sent: what was changed in the dialog is not valid "
            f"({detail}). Call the tool again to ask the person again.") from bad
    gate_personal_data(tool, caller.scopes, arguments)
    edited_ctx = replace(ctx, arguments=arguments)
    check_rules(tool, edited_ctx)
    return edited_ctx, edited


def _and(words: Any) -> str:
    listed = [str(word).lower() for word in words]
    return ", ".join(listed[:-1]) + " and " + listed[-1] if len(listed) > 1 else listed[0]


_NOT_MADE: Final = {
    "decline": "Not executed. The person declined this change in their client; nothing was "
               "sent. Do not ask again unless they say so.",
    "cancel": "Not executed. The person closed the confirmation without answering; nothing "
              "was sent. Call again to ask them again.",
    "unconfirmed": "Not executed. The person did not confirm this change in their client; "
                   "nothing was sent.",
}


def decision(answer: Any) -> str | None:
    """What a person answered: accept (confirm ticked), unconfirmed, decline or cancel; None
    for no usable answer (it is asked again)."""
    if not isinstance(answer, dict):
        return None
    action = answer.get("action")
    if action in ("decline", "cancel"):
        return str(action)
    content = answer.get("content")
    confirmed = content.get(CONFIRM) if isinstance(content, dict) else None
    if action != "accept" or not isinstance(confirmed, bool):
        return None
    return "accept" if confirmed else "unconfirmed"


def human_required(tool: str, token_given: bool) -> str:
    """Why a `writes.require_human` tool refuses this client."""
    if token_given:
        return (f"Not executed. {tool} is confirmed only by a person in the client's own "
                "dialog, never by a confirmation_token; nothing was sent.")
    return (f"Not previewed. {tool} changes only what a person confirms in the client's own "
            "dialog, and this client cannot show one: it does not declare the elicitation "
            "capability (MCP 2026-07-28). Nothing was read or changed; use a client that "
            "supports elicitation.")


def confirmation_message(tool: CompiledTool, preview: Mapping[str, Any], service: str,
                         arguments: Mapping[str, Any]) -> str:
    """What a person reads before a change: the tool, its target, the state now and after,
    the exact request, and whether it can be undone. Values are as the preview shows them
    (de-identified for a caller without the PII scope)."""
    lines = [f"{tool.spec.title or tool.name} ({tool.name}) in {service}: confirm this change."]
    irreversible = tool.spec.write.irreversible if tool.spec.write else None
    if irreversible:
        lines.append(f"This {irreversible.rstrip('.')}: it cannot be undone.")
    would_send = preview.get("would_send") or {}
    body = would_send.get("body")
    current = preview.get("current")
    current = current if isinstance(current, dict) else {}
    target = {name: arguments[name] for name in _path_arguments(tool) if name in arguments}
    if not target and isinstance(current.get("id"), str | int):
        target = {"id": current["id"]}
    if target:
        lines += ["", "Target: " + ", ".join(f"{name} {_text(v)}" for name, v in target.items())]
    lines += _before_after(current, body if isinstance(body, dict) else {},
                           set(target.values()))
    lines += ["", f"The request sent on confirmation: {would_send.get('method')} "
                  f"{would_send.get('url')}"]
    lines += [f"  query {key}: {_text(value)}"
              for key, value in (would_send.get("query") or {}).items()]
    if isinstance(body, dict):
        lines += _entries(body)
    elif body is not None:
        lines.append(f"  body: {_text(body)}")
    lines += ["", "Nothing has been changed yet. Confirm to make exactly this change, once; "
                  "decline to leave everything as it is."]
    return "\n".join(lines)


def _before_after(current: Mapping[str, Any], body: Mapping[str, Any],
                  target: set[Any]) -> list[str]:
    """The current state (but the target), each value the request sets shown with its new
    value."""
    shown = {key: value for key, value in current.items()
             if not (isinstance(value, str | int) and value in target)}
    if not shown:
        return []
    changes = {key: _replacing(key, body) for key in shown}
    heading = ("Now -> after the change:" if any(changes.values())
               else "Now (read just before asking):")
    lines = ["", heading]
    for key, value in list(shown.items())[:MAX_LINES]:
        after = changes[key]
        change = ("" if after is None else " (unchanged)" if body[after] == value
                  else f" -> {_text(body[after])}")
        lines.append(f"  {_label(key)}: {_text(value)}{change}")
    return lines + _more(len(shown))


def _replacing(key: str, body: Mapping[str, Any]) -> str | None:
    """The body key that sets `key` of the current state: the same name, or its last word
    (`tags` sets `feedbackTags`)."""
    folded = key.casefold()
    for name in body:
        other = name.casefold()
        if other == folded or (len(other) > 2 and folded.endswith(other)
                               and _label(key).casefold().endswith(_label(name).casefold())):
            return str(name)
    return None


def _entries(values: Mapping[str, Any]) -> list[str]:
    lines = [f"  {key}: {_text(value)}" for key, value in list(values.items())[:MAX_LINES]]
    return lines + _more(len(values))


def _more(count: int) -> list[str]:
    return [f"  ... and {count - MAX_LINES} more"] if count > MAX_LINES else []


def _path_arguments(tool: CompiledTool) -> list[str]:
    request = tool.request
    return [part.argument for part in request.path if part.argument] if request else []


def _label(key: str) -> str:
    """`feedbackTags` and `feedback_tags` read "Feedback tags"."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ").split()
    text = " ".join(words).lower()
    return text[:1].upper() + text[1:]


def _text(value: Any) -> str:
    """A value as a person reads it: text as is, a list of texts joined, yes/no, none."""
    if value is None or value in ("", [], {}):
        text = "(none)"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, str | int | float):
        text = str(value)
    elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        text = ", ".join(str(v) for v in value)
    else:
        text = orjson.dumps(value).decode()
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[:MAX_VALUE_CHARS]}... ({len(text) - MAX_VALUE_CHARS} more characters)"
    return text
