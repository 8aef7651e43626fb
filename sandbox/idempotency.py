"""The sandbox honours `Idempotency-Key` on writes, as payment-style APIs do: the same key from
the same caller within 24 hours gets the first answer again (marked `Idempotent-Replayed: true`)
and the write is not repeated. The gateway sends one key per confirmed write."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

WINDOW: Final = timedelta(hours=24)
MAX_KEYS: Final = 10_000
"""Answers remembered at most; the oldest are forgotten first."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Remembered = tuple[datetime, int, bytes, str]


def idempotent_writes(clock: Callable[[], datetime]) -> Middleware:
    """A middleware remembering the answer to each keyed write for WINDOW."""
    answers: OrderedDict[tuple[str, str], _Remembered] = OrderedDict()

    @web.middleware
    async def replay(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method in ("GET", "HEAD") or not key:
            return await handler(request)
        scope = (request.headers.get("Authorization", ""), key)  # one caller's keys only
        remembered = answers.get(scope)
        if remembered is not None and clock() - remembered[0] < WINDOW:
            _, status, body, content_type = remembered
            return web.Response(status=status, body=body, content_type=content_type,
                                headers={"Idempotent-Replayed": "true"})
        response = await handler(request)
        if isinstance(response, web.Response) and isinstance(response.body, bytes) and (
                response.status < 500):
            answers[scope] = (clock(), response.status, response.body,
                              response.content_type)
            answers.move_to_end(scope)
            while len(answers) > MAX_KEYS:
                answers.popitem(last=False)
        return response

    return replay
