"""The two phases of a write tool call: preview (nothing changes upstream) and confirmed execution.

The first call answers with exactly what would be sent, the current state when the spec has a
preview read, and a signed single-use confirmation token. The same call with that token executes
once, inside the account's write rate limit. Every phase leaves one audit record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from gateway.calls.arguments import enforce_rules
from gateway.calls.context import Caller
from gateway.calls.lookups import fill
from gateway.calls.shaping import select
from gateway.errors import (
    ResponseShapeError,
    StoreUnavailable,
    ToolExecutionError,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.logs import request_ids
from gateway.spec.compiled import CompiledRequest, CompiledTool
from gateway.spec.jmes import search
from gateway.spec.templates import RenderContext
from gateway.telemetry.metrics import WRITES
from gateway.upstream.client import Upstream
from gateway.upstream.requests import build_request
from gateway.writes.audit import AuditLog
from gateway.writes.confirmations import (
    CONFIRMATION_ARGUMENT,
    ConfirmationRefused,
    arguments_digest,
    issue,
    verify,
)
from gateway.writes.limits import LimitStore
from gateway.writes.previews import Redactor, as_given, describe, write_request
from gateway.writes.reconcile import (
    UNKNOWN,
    VERIFIED_DONE,
    VERIFIED_NOT_APPLIED,
    baseline,
    how_to_check,
    verified,
)


@dataclass(frozen=True)
class _Call:
    """One write call: who, what, and the digest of exactly the arguments the caller gave."""

    tool: CompiledTool
    caller: Caller
    arguments: dict[str, Any]
    digest: str
    confirmed_by: str = "token"
    """Who confirms an execution: the caller with its `token`, or a person (`elicitation`)."""
    edited: tuple[str, ...] = ()
    """The arguments the person changed in the dialog before confirming."""


@dataclass(frozen=True)
class WriteOutcome:
    result: dict[str, Any]
    upstream_status: int | None = None


class WriteCalls:
    """Runs write tools; shares the upstream client, limit store and audit log of the app."""

    def __init__(self, upstream: Upstream, limits: LimitStore, audit: AuditLog, key: bytes,
                 clock: Callable[[], float]) -> None:
        self._upstream = upstream
        self._limits = limits
        self._audit = audit
        self._key = key
        self._clock = clock

    async def call(self, tool: CompiledTool, caller: Caller, ctx: RenderContext,
                   redact: Redactor) -> WriteOutcome:
        """Raises:
            ToolExecutionError: a refused confirmation, the rate limit, or an upstream failure.
        """
        token = ctx.arguments.get(CONFIRMATION_ARGUMENT)
        arguments = {k: v for k, v in ctx.arguments.items() if k != CONFIRMATION_ARGUMENT}
        ctx = replace(ctx, arguments=arguments)
        call = _Call(tool, caller, arguments, arguments_digest(tool.name, arguments))
        if token is None:
            return await self._preview(call, ctx, redact)
        return await self._execute(call, ctx, redact, token)

    async def _prepared(self, call: _Call, ctx: RenderContext) -> RenderContext:
        """Lookups filled, then the preview read (the current state) as `current`."""
        async def send(request: CompiledRequest, in_ctx: RenderContext) -> Any:
            return (await self._upstream.send_spec(request, call.caller, in_ctx)).body

        ctx = await fill(call.tool, ctx, send)
        preview = call.tool.preview
        if preview is None:
            return ctx
        body = await send(preview.request, ctx)
        return replace(ctx, current=search(preview.select, body) if preview.select else body)

    async def _preview(self, call: _Call, ctx: RenderContext,
                       redact: Redactor) -> WriteOutcome:
        tool, caller = call.tool, call.caller
        policy = caller.writes
        try:
            wait = await self._limits.take(f"previews:{caller.service}:{caller.tenant}",
                                           policy.previews_per_account_per_minute,
                                           policy.previews_per_account_per_minute / 60.0,
                                           self._clock())
        except StoreUnavailable as down:
            log.warning("limit_store_unavailable", tool=tool.name, error=str(down))
            self._record(call, "preview", "refused", reason="store_unavailable")
            raise ToolExecutionError(f"Not previewed: the limit store did not answer ({down}); "
                                     "retry shortly.") from down
        if wait > 0:
            self._record(call, "preview", "refused", reason="rate_limited")
            raise ToolExecutionError(
                f"Not previewed. This account's preview limit "
                f"({policy.previews_per_account_per_minute} a minute) is reached; retry in "
                f"{max(1, round(wait))} seconds.", retry_after_s=wait)
        ctx = await self._prepared(call, ctx)
        self._check_current(call, ctx)
        would_send = build_request(write_request(tool), caller.upstream, ctx, None)
        confirmation = issue(self._key, tool=tool.name, arguments=call.arguments,
                             subject=caller.subject, account=caller.account,
                             now=self._clock(), ttl_s=caller.writes.confirm_ttl_s)
        self._record(call, "preview", "previewed")
        expires = datetime.fromtimestamp(confirmation.expires_at, UTC)
        result: dict[str, Any] = {
            "status": "preview",
            "changed": False,
            "would_send": as_given(describe(would_send), redact, call.arguments),
            "confirmation_token": confirmation.token,
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
            "next_step": (f"Nothing has been changed. To apply exactly this change, call "
                          f"{tool.name} again with the same arguments plus "
                          f"{CONFIRMATION_ARGUMENT} before it expires."),
        }
        if tool.preview is not None:
            result["current"] = redact(ctx.current)
        return WriteOutcome(result)

    def _check_current(self, call: _Call, ctx: RenderContext) -> None:
        """The spec's rules over the preview read: a broken one refuses the preview, issuing no
        token for a write the upstream would refuse. Raises: ToolExecutionError, its words."""
        try:
            enforce_rules(call.tool.preview.checks if call.tool.preview else (), ctx)
        except ToolExecutionError:
            self._record(call, "preview", "refused", reason="preview_check")
            raise

    async def _execute(self, call: _Call, ctx: RenderContext, redact: Redactor,
                       token: Any) -> WriteOutcome:
        tool, caller = call.tool, call.caller
        now = self._clock()
        try:
            nonce, expires_at = verify(self._key, token, tool=tool.name, arguments=call.arguments,
                                       subject=caller.subject, account=caller.account, now=now)
        except ConfirmationRefused as refused:
            self._record(call, "execute", "refused", reason=refused.reason)
            raise ToolExecutionError(f"Not executed. {refused.reason}") from refused
        return await self._redeem(call, ctx, redact, nonce, expires_at, now)

    async def execute_confirmed(self, tool: CompiledTool, caller: Caller, ctx: RenderContext,
                                redact: Redactor, nonce: str, expires_at: int,
                                edited: tuple[str, ...] = ()) -> WriteOutcome:
        """Execute a change a person confirmed (writes/elicitation.py checked its request
        state) once, within the write limit, like a token's.

        Raises:
            ConfirmationRefused: it was used before. ToolExecutionError: as for a token.
        """
        call = _Call(tool, caller, dict(ctx.arguments),
                     arguments_digest(tool.name, ctx.arguments), "elicitation", edited)
        return await self._redeem(call, ctx, redact, nonce, expires_at, self._clock())

    async def declined(self, tool: CompiledTool, caller: Caller, arguments: dict[str, Any],
                       nonce: str, expires_at: int, answer: str) -> bool:
        """Record a change a person declined (nothing is sent) and use up its confirmation;
        False when it was used before."""
        call = _Call(tool, caller, arguments, arguments_digest(tool.name, arguments),
                     "elicitation")
        try:
            fresh = await self._limits.claim_once(f"confirm:{nonce}",
                                                  max(1, expires_at - int(self._clock())))
        except StoreUnavailable as down:  # nothing runs either way
            log.warning("confirmation_not_claimed", tool=tool.name, error=str(down))
            fresh = True
        self._record(call, "execute", "declined" if fresh else "refused",
                     reason=answer if fresh else "reused")
        return fresh

    async def _redeem(self, call: _Call, ctx: RenderContext, redact: Redactor, nonce: str,
                      expires_at: int, now: float) -> WriteOutcome:
        # Claim the token first, so a reused one costs no write budget; give the claim back
        # when the limit refuses, so the same token works once the limit allows.
        claim = f"confirm:{nonce}"
        try:
            claimed = await self._limits.claim_once(claim, max(1, expires_at - int(now)))
        except StoreUnavailable as down:
            raise self._store_down(call, down, token_kept=True) from down
        if not claimed:
            self._record(call, "execute", "refused", reason="reused")
            if call.confirmed_by != "token":
                raise ConfirmationRefused("The request state was already used.")
            raise ToolExecutionError(await self._reused(call, claim))
        caller, policy = call.caller, call.caller.writes
        try:
            wait = await self._limits.take(f"writes:{caller.service}:{caller.tenant}",
                                           policy.per_account_per_minute,
                                           policy.per_account_per_minute / 60.0, now)
        except StoreUnavailable as down:
            raise self._store_down(call, down, token_kept=await self._give_back(claim)) from down
        if wait > 0:
            kept = await self._give_back(claim)
            self._record(call, "execute", "refused", reason="rate_limited")
            raise ToolExecutionError(
                f"Not executed. This account's write limit ({policy.per_account_per_minute} a "
                f"minute) is reached; retry in {max(1, round(wait))} seconds"
                + _retry_when(call, kept),
                retry_after_s=wait)
        try:
            ctx = await self._prepared(call, ctx)
        except ToolExecutionError as failed:
            kept = await self._give_back(claim)  # nothing was sent
            self._record(call, "execute", "failed", reason="not_sent",
                         upstream_status=getattr(failed, "status", None))
            raise ToolExecutionError(f"Not executed, nothing was changed: {failed.message} "
                                     + _retry_advice(call, kept)) from failed
        before = await baseline(self._upstream, call.tool, call.caller, ctx)
        return await self._send_write(call, ctx, redact, claim, idempotency_key(nonce),
                                      before)

    async def _reused(self, call: _Call, claim: str) -> str:
        """What a caller resending a used confirmation is told: what became of its first use.
        "Preview again" only when that use provably changed nothing: a resend after a lost
        answer (a dead replica, a broken connection) must not lead to the change twice."""
        try:
            state = await self._limits.state_of(claim)
        except StoreUnavailable:
            state = None
        if state == "done":
            return ("Not executed. The confirmation token was already used, and that change "
                    "was applied: do not repeat it.")
        if state in ("failed", "not_applied"):
            return ("Not executed. The confirmation token was already used, and that change was "
                    "not applied; preview the change again.")
        return ("Not executed. The confirmation token was already used by a request whose "
                "outcome is not known (it may still be running, or it stopped before "
                "answering). The change may have been applied: do not preview it again "
                "blindly" + how_to_check(call.tool))

    async def _settle(self, claim: str, state: str) -> None:
        """Remember what became of a confirmation, for a caller who sends it again."""
        try:
            await self._limits.settle(claim, state)
        except StoreUnavailable as down:
            log.warning("confirmation_not_settled", state=state, error=str(down))

    async def _give_back(self, claim: str) -> bool:
        """Release a claim whose write did not run; whether the token is good again."""
        try:
            await self._limits.release(claim)
        except StoreUnavailable as down:
            log.warning("confirmation_not_released", error=str(down))
            return False
        return True

    def _store_down(self, call: _Call, down: StoreUnavailable, *,
                    token_kept: bool) -> ToolExecutionError:
        """What the caller is told when the limit store fails before the write was sent."""
        log.warning("limit_store_unavailable", tool=call.tool.name, error=str(down))
        self._record(call, "execute", "refused", reason="store_unavailable")
        return ToolExecutionError(
            "Not executed, nothing was changed: the store that makes confirmations single-use "
            f"did not answer ({down}). " + _retry_advice(call, token_kept))

    async def _send_write(self, call: _Call, ctx: RenderContext, redact: Redactor, claim: str,
                          key: str, before: Any) -> WriteOutcome:
        """Send the write once and say honestly what became of it: done, failed (the upstream
        said so, or the request never left), or unknown (it may have been applied).

        Raises:
            ToolExecutionError: anything but done.
        """
        tool = call.tool
        # Recorded before the request leaves: a process that dies before the answer still
        # leaves a trace of a write that may have been applied.
        self._record(call, "execute", "sending")
        try:
            response = await self._upstream.send_spec(
                write_request(tool), call.caller, ctx, extra_headers={IDEMPOTENCY_HEADER: key},
                retry=False)
        except UpstreamError as failed:
            self._record(call, "execute", "failed", upstream_status=failed.status)
            await self._settle(claim, "failed")
            raise
        except ResponseShapeError as unreadable:
            self._record(call, "execute", "done", reason="answer_unreadable")
            await self._settle(claim, "done")
            raise ToolExecutionError(
                "The change was applied (the upstream accepted it), but its answer could not be "
                f"read: {unreadable.message} Do not repeat the change; read the item to see its "
                "new state.") from unreadable
        except UpstreamUnavailable as lost:
            if lost.maybe_delivered:
                return await self._reconciled(call, ctx, before, lost, claim)
            kept = await self._give_back(claim)
            self._record(call, "execute", "failed", reason="not_sent")
            raise ToolExecutionError(f"Not executed, nothing was changed: {lost.message} "
                                     + _retry_advice(call, kept)) from lost
        self._record(call, "execute", "done", upstream_status=response.status)
        await self._settle(claim, "done")
        done = {"status": "done", "changed": True,
                "result": redact(select(tool.shape.select, response.body))}
        if call.edited:  # the model asked for something else: it is told what the person changed
            done["edited_in_dialog"] = list(call.edited)
        return WriteOutcome(done, response.status)

    async def _reconciled(self, call: _Call, ctx: RenderContext, before: Any,
                          lost: UpstreamUnavailable, claim: str) -> WriteOutcome:
        """A write sent whose answer was lost: one verification read, when the spec declares
        one, tells done from not applied; otherwise, or when it cannot tell, the outcome is
        unknown. Never a blind retry.

        Raises:
            ToolExecutionError: not applied, or unknown.
        """
        what = lost.message.split(";")[0].rstrip(".")  # the failure, not its advice
        applied = await verified(self._upstream, call.tool, call.caller, ctx, before)
        await self._settle(claim, {True: "done", False: "not_applied", None: "unknown"}[applied])
        if applied is True:
            self._record(call, "execute", "done", reason="verified")
            return WriteOutcome({"status": "done", "changed": True, "verified": True,
                                 "note": VERIFIED_DONE.format(what)})
        if applied is False:
            self._record(call, "execute", "not_applied", reason="verified")
            raise ToolExecutionError(VERIFIED_NOT_APPLIED.format(what, call.tool.name))
        self._record(call, "execute", "unknown", reason="answer_lost")
        raise ToolExecutionError(UNKNOWN.format(what) + how_to_check(call.tool))

    def _record(self, call: _Call, phase: str, outcome: str, **extra: Any) -> None:
        """One audit record: our request id and the caller's own (`correlation_id`) apart, the
        arguments only as their digest, never a token."""
        WRITES.labels(call.caller.service, call.tool.name, phase, outcome).inc()
        bound = request_ids()
        record = self._audit.write(request_id=bound.get("request_id"),
                                   correlation_id=bound.get("correlation_id"),
                                   service=call.caller.service,
                                   tool=call.tool.name, phase=phase, outcome=outcome,
                                   subject=call.caller.subject,
                                   account=call.caller.account,
                                   arguments_digest=call.digest,
                                   confirmed_by=call.confirmed_by if phase == "execute" else None,
                                   **({"edited": list(call.edited)} if call.edited else {}),
                                   **{"upstream_status": None, "reason": None, **extra})
        if not self._audit.to_file:
            structlog.get_logger("gateway.writes.audit").info("audit", **record)


IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
_RETRY: Final = {True: "The token is still good: retry with it shortly.",
                 False: "The token could not be given back: preview the change again."}
_LATER: Final = {True: " with the same token.", False: " after a new preview."}
# A person's confirmation lives in the client's retry, which the model does not hold: calling
# again asks the person again, whether or not the confirmation could be given back.
_ASK_AGAIN: Final = "Call the tool again shortly; the person will be asked again."


def _retry_advice(call: _Call, kept: bool) -> str:
    """What to do about a write that was not made: the sentence after the reason."""
    return _ASK_AGAIN if call.confirmed_by == "elicitation" else _RETRY[kept]


def _retry_when(call: _Call, kept: bool) -> str:
    """The end of "retry in N seconds": with what."""
    if call.confirmed_by == "elicitation":
        return " (the person will be asked again)."
    return _LATER[kept]


log = structlog.get_logger("gateway.writes")


def idempotency_key(nonce: str) -> str:
    """The Idempotency-Key of a confirmed write: one per confirmation, so an upstream that honours
    the header drops a duplicate of the same confirmed change, and reveals nothing of the token."""
    return hashlib.sha256(b"mcp-gateway idempotency\x00" + nonce.encode()).hexdigest()[:32]

