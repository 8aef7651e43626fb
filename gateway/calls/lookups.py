"""Fill values a call did not give from small reads declared in the tool's `lookups`.

Orchestration only: the read itself is done by the injected `send`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from gateway.spec.compiled import CompiledRequest, CompiledTool
from gateway.spec.jmes import search
from gateway.spec.templates import RenderContext

Send = Callable[[CompiledRequest, RenderContext], Awaitable[Any]]
"""Sends one request rendered in a context and returns the upstream body."""


async def fill(tool: CompiledTool, ctx: RenderContext, send: Send) -> RenderContext:
    """The context with every runnable lookup's value added to the arguments.

    A lookup runs when its value was not given and every argument its request names was.
    """
    if not tool.lookups:
        return ctx
    arguments = dict(ctx.arguments)
    for lookup in tool.lookups:
        if arguments.get(lookup.name) is not None:
            continue
        if any(arguments.get(name) is None for name in lookup.needs):
            continue
        body = await send(lookup.request, replace(ctx, arguments=arguments))
        value = search(lookup.select, body)
        if value is not None:
            arguments[lookup.name] = value
    return replace(ctx, arguments=arguments)
