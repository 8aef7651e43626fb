"""Retently credentials (§4.1 and §17.5): the four ways to send a token, and the per-call context.

Every `/api/v2` handler is wrapped by `endpoint`, which authenticates, counts the request
against the 150/min limit when enabled, and refuses writes to read-only tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps

from aiohttp import web

from sandbox.errors import UpstreamError, retently_error
from sandbox.http import SANDBOX, Params, params_of
from sandbox.store import RetentlyAccount, RetentlyToken, Sandbox

RATE_LIMIT = 150
"""Requests per minute per token (§7)."""

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RetentlyCall:
    """What a handler needs besides the request: state, caller, account and query."""

    sandbox: Sandbox
    token: RetentlyToken
    account: RetentlyAccount
    params: Params


Handler = Callable[[web.Request, RetentlyCall], Awaitable[web.StreamResponse]]


def presented_token(request: web.Request) -> str | None:
    """The token from `Authorization` (`api_key=` or `Bearer`), `X-Api-Key`, or `?api_key=`.

    Raises:
        UpstreamError: 401 for an `Authorization` header in any other scheme.
    """
    header = request.headers.get("Authorization", "").strip()
    if header:
        if header.lower().startswith("api_key="):
            return header[len("api_key=") :].strip()
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise retently_error(401)
    if request.headers.get("X-Api-Key", "").strip():
        return request.headers["X-Api-Key"].strip()
    return request.query.get("api_key") or None


def authenticate(request: web.Request, sandbox: Sandbox) -> tuple[RetentlyToken, RetentlyAccount]:
    """Resolve the caller's token to an active token and its account.

    Raises:
        UpstreamError: 401 for a missing, unknown, expired or revoked token.
    """
    token = sandbox.retently_tokens.get(presented_token(request) or "")
    if token is None or not token.active(sandbox.now()):
        raise retently_error(401)
    account = sandbox.retently.get(token.account_id)
    if account is None:
        raise UpstreamError(401, {"message": "Account not found"})
    return token, account


def _limit_headers(sandbox: Sandbox, token: RetentlyToken) -> dict[str, str]:
    if sandbox.limiter is None:
        return {}
    decision = sandbox.limiter.hit(f"retently:{token.token}", RATE_LIMIT)
    # Header names follow client code that probed the live API (§7, INFERRED).
    headers = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(decision.reset),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after)
        raise retently_error(429, headers=headers)
    return headers


def endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a Retently handler with auth, rate limiting and the read/write permission check."""

    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        sandbox = request.app[SANDBOX]
        token, account = authenticate(request, sandbox)
        headers = _limit_headers(sandbox, token)
        try:
            if request.method in WRITE_METHODS and token.permission != "write":
                raise retently_error(403)
            response = await handler(
                request, RetentlyCall(sandbox, token, account, params_of(request))
            )
        except UpstreamError as error:
            error.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return wrapped


def envelope(data: object, message: str = "Success.") -> dict[str, object]:
    return {"message": message, "code": 200, "data": data}
