"""Input rounds: a tool or prompt that asks its client for input before it runs (spec:
`input_required`). Pure: the state key and the clock come in as arguments.

Each round asks, together, the requests the client declared it can answer (the others are left
unasked, or refuse the call when `required`). The `requestState` sent with them is sealed like a
confirmation token (writes/confirmations.py): bound to the call, its arguments and the caller,
expiring, and naming the round and the answers so far, so a retry picks up where it left off and
anything tampered, expired or another caller's is refused with -32602. An answer missing from a
retry is asked for again. Answers are no more trusted than arguments: nothing here is single-use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

from gateway.calls.context import Caller
from gateway.protocol.envelope import Inbound
from gateway.protocol.mrtr import (
    MAX_STATE_LENGTH,
    InputRequired,
    Retry,
    input_required,
    missing_capability,
    refused_input,
    retry_of,
)
from gateway.spec.compiled import CompiledInput, InputRounds
from gateway.spec.templates import RenderContext, render_value
from gateway.writes.confirmations import ConfirmationRefused, claims_of, issue

PURPOSE: Final = "input"
"""The `p` claim of a rounds state (a write's confirmation state says `elicitation`)."""


class Rounds:
    """Asks what calls declare they need of their client; holds no per-request state."""

    def __init__(self, key: bytes, clock: Callable[[], float]) -> None:
        self._key = key
        self._clock = clock

    def gather(self, rounds: InputRounds, inbound: Inbound, target: str, caller: Caller,
               ctx: RenderContext) -> RenderContext | InputRequired:
        """`ctx` with every answer (as `inputs`) once all rounds are answered; until then the
        `input_required` answer asking the next requests. `target` names the call in its state
        (a tool's name; `prompt <name>` for a prompt).

        Raises:
            ProtocolError: -32602 for a state that fails its checks or answers of the wrong
                shape; -32021 (-32602 in the legacy era) when a `required` request cannot be
                asked of this client.
        """
        if not rounds:
            return ctx
        retry = retry_of(inbound)
        now = self._clock()
        done, answers = 0, dict[str, Any]()
        if retry.state is not None:
            done, answers = self._opened(retry.state, target, caller, ctx, now)
        for index in range(min(done, len(rounds)), len(rounds)):
            asked = [request for request in rounds[index]
                     if _askable(request, retry, target, inbound.era)]
            answers |= {request.key: retry.answers[request.key] for request in asked
                        if request.key not in answers
                        and fits(request.method, retry.answers.get(request.key))}
            missing = [request for request in asked if request.key not in answers]
            if missing:
                known = replace(ctx, inputs=values(rounds, answers))
                state = issue(self._key, tool=target, arguments=ctx.arguments,
                              subject=caller.subject, account=caller.account, now=now,
                              ttl_s=caller.writes.confirm_ttl_s,
                              extra={"p": PURPOSE, "r": index, "i": answers})
                return input_required({request.key: {
                    "method": request.method, "params": render_value(request.params, known)}
                    for request in missing}, state.token)
        return replace(ctx, inputs=values(rounds, answers))

    def _opened(self, state: str, target: str, caller: Caller, ctx: RenderContext,
                now: float) -> tuple[int, dict[str, Any]]:
        """The round a state was issued for and the answers it carries.

        Raises:
            ProtocolError: -32602 for a state that fails any check.
        """
        try:
            claims = claims_of(self._key, state, tool=target, arguments=ctx.arguments,
                               subject=caller.subject, account=caller.account, now=now,
                               what="The request state", max_length=MAX_STATE_LENGTH)
        except ConfirmationRefused as refused:
            raise refused_input(refused.reason) from refused
        done, answers = claims.get("r"), claims.get("i")
        if claims.get("p") != PURPOSE or type(done) is not int or not isinstance(answers, dict):
            raise refused_input("The request state is not for this request.")
        return done, answers


def _askable(request: CompiledInput, retry: Retry, target: str, era: str) -> bool:
    """Whether to ask `request` of this client; never what it did not declare.

    Raises:
        ProtocolError: a `required` request this client cannot answer.
    """
    if retry.can_answer(request.method):
        return True
    if request.required:
        raise missing_capability(target, request.method, era)
    return False


def fits(method: str, answer: Any) -> bool:
    """Whether an answer is of the kind its request asks for (else it is asked again)."""
    if not isinstance(answer, dict):
        return False
    if method == "elicitation/create":
        return answer.get("action") in ("accept", "decline", "cancel")
    if method == "sampling/createMessage":
        return "content" in answer
    return isinstance(answer.get("roots"), list)


def values(rounds: InputRounds, answers: Mapping[str, Any]) -> dict[str, Any]:
    """What templates see of each answer given (`{input.<key>}`)."""
    return {request.key: answer_value(request.method, answers[request.key])
            for asked in rounds for request in asked if request.key in answers}


def answer_value(method: str, answer: Any) -> Any:
    """An answer as templates see it: an elicitation's content when accepted (None when
    declined or cancelled), a sampling's text, the list of roots."""
    if not isinstance(answer, dict):
        return None
    if method == "elicitation/create":
        return answer.get("content") if answer.get("action") == "accept" else None
    if method == "sampling/createMessage":
        content = answer.get("content")
        blocks = content if isinstance(content, list) else [content]
        texts = [block.get("text") for block in blocks
                 if isinstance(block, dict) and block.get("type") == "text"]
        return "".join(text for text in texts if isinstance(text, str)) or None
    return answer.get("roots")
