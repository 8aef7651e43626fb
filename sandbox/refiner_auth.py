"""Refiner credentials (§3.1, §3.5) and project selection beside the vendor (§10).

A per-project REST key selects its project. A multi-project OAuth token names the project
in `X-Refiner-Project`, must hold it in its grant, and must carry the endpoint's `mcp:*` scope.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from aiohttp import web

from sandbox.errors import UpstreamError, refiner_error, refiner_unknown_key
from sandbox.http import SANDBOX, Params, json_object, params_of
from sandbox.store import RefinerProject, RefinerToken, Sandbox

PROJECT_HEADER = "X-Refiner-Project"
KEY_LIMIT = 4000
"""Requests per minute per key (§3.6)."""
USER_LIMIT = 100
"""Requests per minute per contact identifier (`id`, `email`, `uuid`) per key (§3.6)."""

_KEY_SHAPE = re.compile(r"[A-Za-z0-9_.\-]+")
_MIN_KEY_LENGTH = 8
_IDENTIFIERS = ("id", "email", "uuid")


@dataclass(frozen=True)
class RefinerCall:
    sandbox: Sandbox
    token: RefinerToken
    project: RefinerProject | None
    """None only on account-level endpoints (`GET /v1/`, `GET /v1/account`)."""
    params: Params
    body: dict[str, Any]

    @property
    def scoped(self) -> RefinerProject:
        """The selected project of a project-scoped endpoint."""
        if self.project is None:  # endpoint() always sets it when project=True
            raise refiner_error(400, f"{PROJECT_HEADER} header required")
        return self.project


Handler = Callable[[web.Request, RefinerCall], Awaitable[web.StreamResponse]]


def presented_key(request: web.Request, body: dict[str, Any]) -> str | None:
    """The key from `Bearer`, HTTP Basic (key as username), `?api_key=` or a JSON `api_key`.

    Raises:
        UpstreamError: 401 for a Basic header that does not decode.
    """
    header = request.headers.get("Authorization", "").strip()
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise refiner_error(401, "API key does not look valid") from exc
        return decoded.partition(":")[0] or None
    query_key = request.query.get("api_key")
    if query_key:
        return query_key
    body_key = body.get("api_key")
    return body_key if isinstance(body_key, str) and body_key else None


def authenticate(request: web.Request, sandbox: Sandbox, body: dict[str, Any]) -> RefinerToken:
    """Raises: UpstreamError 401 (no or malformed key) or 404 (unknown or expired key), as §3.5."""
    key = presented_key(request, body)
    if key is None or len(key) < _MIN_KEY_LENGTH:
        raise refiner_error(401, "No API key found in headers")
    if not _KEY_SHAPE.fullmatch(key):
        raise refiner_error(401, "API key does not look valid")
    token = sandbox.refiner_tokens.get(key)
    if token is None or not token.active(sandbox.now()):
        raise refiner_unknown_key()
    return token


def select_project(request: web.Request, sandbox: Sandbox, token: RefinerToken) -> RefinerProject:
    """Raises: UpstreamError 400 without the header on a multi-project token, 403 off-grant."""
    wanted = request.headers.get(PROJECT_HEADER, "").strip().lower()
    if token.kind == "api_key":
        own = token.projects[0]
        if wanted and wanted != own:
            raise refiner_error(403, "Project not accessible with this token")
        return sandbox.refiner[own]
    if not wanted:
        raise refiner_error(400, f"{PROJECT_HEADER} header required")
    if wanted not in token.projects or wanted not in sandbox.refiner:
        raise refiner_error(403, "Project not accessible with this token")
    return sandbox.refiner[wanted]


def first_value(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _rate_limit(
    sandbox: Sandbox, token: RefinerToken, params: Params, body: dict[str, Any]
) -> None:
    if sandbox.limiter is None:
        return
    checks = [(f"refiner:{token.token}", KEY_LIMIT)]
    for name in _IDENTIFIERS:
        value = body.get(name) if name in body else first_value(params, name)
        if value:
            checks.append((f"refiner:{token.token}:{name}:{value}", USER_LIMIT))
    for key, limit in checks:
        decision = sandbox.limiter.hit(key, limit)
        if not decision.allowed:
            # Refiner sends Retry-After only; no X-RateLimit-* headers (§3.6).
            raise refiner_error(
                429, "Too many requests", {"Retry-After": str(decision.retry_after)}
            )


def endpoint(
    *, scope: str | None, project: bool = True, write: bool = False, rest_only: bool = False
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a Refiner handler: key, rate limit, project choice, then the OAuth scope check.

    `rest_only` endpoints (contacts: all PII, no MCP tool) refuse OAuth tokens outright.
    """

    def decorate(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            sandbox = request.app[SANDBOX]
            body: dict[str, Any] = {}
            if request.method in ("POST", "DELETE", "PUT", "PATCH"):
                body = await json_object(request, lambda: refiner_error(400, "Invalid JSON body"))
            token = authenticate(request, sandbox, body)
            params = params_of(request)
            _rate_limit(sandbox, token, params, body)
            selected = select_project(request, sandbox, token) if project else None
            if token.kind == "oauth":
                # MCP tokens are read-only and scoped (§9.1); REST keys carry no scopes (§1).
                if write:
                    raise refiner_error(403, "This token is read-only")
                if rest_only:
                    raise refiner_error(403, "This endpoint is not available with this token")
                if scope and scope not in token.scopes:
                    raise refiner_error(403, f"Insufficient scope: {scope} required")
            return await handler(request, RefinerCall(sandbox, token, selected, params, body))

        return wrapped

    return decorate


def accessible_projects(sandbox: Sandbox, token: RefinerToken) -> list[RefinerProject]:
    return [sandbox.refiner[uuid] for uuid in token.projects if uuid in sandbox.refiner]


def ensure(condition: bool, status: int, text: str) -> None:
    """Raises: UpstreamError `status` with `{"error": text}` unless `condition` holds."""
    if not condition:
        raise UpstreamError(status, {"error": text})
