"""Telling what became of a write whose answer was lost: the spec's verification read
(`write.verify`), made once after the loss, and before the write when it compares with a baseline.
Never a blind retry."""

from __future__ import annotations

from typing import Any, Final

import structlog

from gateway.calls.context import Caller
from gateway.errors import ToolExecutionError
from gateway.spec.compiled import CompiledTool
from gateway.spec.jmes import search
from gateway.spec.templates import RenderContext
from gateway.upstream.client import Upstream

log = structlog.get_logger("gateway.writes")

UNKNOWN: Final = ("Outcome unknown: the request reached the upstream but its answer was lost "
                  "({}). The change may have been applied. Do not repeat it blindly: read the "
                  "item first to see whether it took effect")
VERIFIED_DONE: Final = ("The answer to the write was lost ({}), but a read made right after "
                        "shows the change applied. Do not repeat it.")
VERIFIED_NOT_APPLIED: Final = (
    "Not applied: the request was sent but its answer was lost ({}), and a read made right "
    "after shows no sign of the change. To make it, preview it again with {} (this "
    "confirmation token is used up).")


async def baseline(upstream: Upstream, tool: CompiledTool, caller: Caller,
                   ctx: RenderContext) -> Any:
    """The verification read made just before the write, when its spec compares with it."""
    check = tool.verification
    if check is None or not check.baseline:
        return None
    try:
        return (await upstream.send_spec(check.request, caller, ctx)).body
    except ToolExecutionError as failed:  # the write does not depend on it: it goes ahead
        log.warning("write_baseline_failed", tool=tool.name, error=failed.message)
        return None


async def verified(upstream: Upstream, tool: CompiledTool, caller: Caller, ctx: RenderContext,
                   before: Any) -> bool | None:
    """Whether the verification read shows the change applied; None when there is no such
    read, it failed, or its answer does not tell."""
    check = tool.verification
    if check is None:
        return None
    try:
        response = await upstream.send_spec(check.request, caller, ctx)
        verdict = search(check.applied, {
            "response": response.body, "before": before, "args": dict(ctx.arguments),
            "current": ctx.current, "principal": dict(caller.fields)})
    except ToolExecutionError as failed:
        log.warning("write_not_verified", tool=tool.name, error=failed.message)
        return None
    return verdict if isinstance(verdict, bool) else None


def how_to_check(tool: CompiledTool) -> str:
    """The end of an "outcome unknown" message: which read tool shows whether it took effect."""
    if tool.verification is None:
        return "."
    return f": {tool.verification.hint}."
