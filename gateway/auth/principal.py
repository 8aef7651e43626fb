"""Bearer extraction, token -> Principal, scope checks, and the WWW-Authenticate challenges. Pure.

Introspection is an HTTP call, so it reaches this module as an injected callable; its results
are cached by a hash of the token, never past the token's expiry.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import AuthError, InsufficientScope
from gateway.spec.compiled import CompiledService

MAX_TOKEN_LENGTH: Final = 4096
NEGATIVE_CACHE_S: Final = 30.0
"""How long a refused token is remembered, so a flood of bad tokens does not reach the AS."""
_TOKEN_CHARS: Final = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token

Introspect = Callable[[str, str], Awaitable[Mapping[str, Any]]]
"""(introspection URL, token) -> the RFC 7662 answer. Raises AuthUnavailable."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as verified: the only source of identity on the request path."""

    token: str | None
    subject: str | None
    account: str | None
    scopes: frozenset[str]
    expires_at: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """More verified claims the service maps to principal fields (e.g. granted projects)."""
    audiences: tuple[str, ...] = ()
    """The token's `aud`, checked against the endpoint on every request (not cached away)."""

    @property
    def anonymous(self) -> bool:
        return self.token is None


ANONYMOUS: Final = Principal(None, None, None, frozenset())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None when there is no header.

    Raises:
        AuthError: a header that is not a well-formed bearer credential.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("The Authorization header must be 'Bearer <token>'",
                        error="invalid_request")
    if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_CHARS.match(token):
        raise AuthError("The bearer token is malformed", error="invalid_token")
    return token


def check_format(service: CompiledService, token: str) -> None:
    """Refuse a token that cannot be the service's before anything is sent anywhere.

    Raises:
        AuthError: the token does not have the service's token format.
    """
    pattern = service.spec.auth.token_pattern
    if pattern is not None and not re.fullmatch(pattern, token):
        raise AuthError(f"This is not a {service.spec.title} token", error="invalid_token")


def passthrough_principal(service: CompiledService, token: str) -> Principal:
    """A principal for a token the upstream will judge: granted the service's default scopes."""
    granted = service.spec.auth.default_scopes or [s.name for s in service.spec.scopes] or [
        s for t in service.tools.values() for s in t.scopes]
    return Principal(token, None, None, frozenset(granted))


def principal_from_claims(service: CompiledService, token: str, claims: Mapping[str, Any],
                          now: float) -> Principal:
    """Turn an RFC 7662 answer into a principal, or refuse the token.

    Raises:
        AuthError: inactive, expired, or issued for another audience.
    """
    spec = service.spec.auth
    if claims.get("active") is not True:
        raise AuthError("The token is not active: it expired or was revoked. Sign in again or "
                        "create a new token.", error="invalid_token")
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires <= now:
        raise AuthError("The token has expired. Sign in again or create a new token.",
                        error="invalid_token")
    audience = claims.get("aud")
    audiences = tuple(str(a) for a in (audience if isinstance(audience, list) else
                                       [] if audience is None else [audience]))
    scope_text = claims.get(spec.claims.scopes) or ""
    scopes = scope_text.split() if isinstance(scope_text, str) else list(scope_text)
    subject = claims.get(spec.claims.subject)
    account = claims.get(spec.claims.account)
    extra = {name: claims.get(claim) for name, claim in spec.claims.extra.items()}
    return Principal(token, None if subject is None else str(subject),
                     None if account is None else str(account), frozenset(scopes),
                     float(expires) if isinstance(expires, int | float) else None, extra,
                     audiences)


def check_audience(service: CompiledService, principal: Principal, resource: str) -> None:
    """Raises:
        AuthError: the service names its audiences and the token is for none of them.
    """
    wanted = service.spec.auth.audience
    if wanted is None or not principal.audiences:
        return
    accepted = {a.replace("{resource}", resource)
                for a in ([wanted] if isinstance(wanted, str) else wanted)}
    if accepted.isdisjoint(principal.audiences):
        raise AuthError("The token was issued for another resource", error="invalid_token")


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal | None
    refusal: AuthError | None
    until: float


class TokenResolver:
    """token -> Principal per the service's resolver, with a bounded cache keyed by token hash."""

    def __init__(self, introspect: Introspect, clock: Callable[[], float], *,
                 max_entries: int = 10_000) -> None:
        self._introspect = introspect
        self._clock = clock
        self._max_entries = max_entries
        # A plain dict: this lookup is on every request, and cachetools' TLRUCache cost more
        # than the rest of the token check. Expiry is checked on read, the bound on write.
        self._cache: dict[tuple[str, str], _Cached] = {}

    async def resolve(self, service: CompiledService, token: str, resource: str = "") -> Principal:
        """Raises:
            AuthError: the token is malformed for the service, inactive, expired or foreign.
            AuthUnavailable: the authorization server could not be asked.
        """
        principal = await self._resolve(service, token)
        check_audience(service, principal, resource)
        return principal

    async def _resolve(self, service: CompiledService, token: str) -> Principal:
        check_format(service, token)
        spec = service.spec.auth
        if spec.resolver == "passthrough" or spec.introspection_url is None:
            return passthrough_principal(service, token)
        key = (service.name, hashlib.sha256(token.encode()).hexdigest())
        cached = self._cache.get(key)
        if cached is not None and cached.until > self._clock():
            if cached.principal is not None:
                return cached.principal
            assert cached.refusal is not None  # noqa: S101 - an entry holds one or the other
            raise cached.refusal
        claims = await self._introspect(spec.introspection_url, token)
        now = self._clock()
        try:
            principal = principal_from_claims(service, token, claims, now)
        except AuthError as refusal:
            self._remember(key, _Cached(None, refusal, now + NEGATIVE_CACHE_S))
            raise
        until = now + spec.cache_ttl_s
        if principal.expires_at is not None:
            until = min(until, principal.expires_at)
        self._remember(key, _Cached(principal, None, until))
        return principal

    def _remember(self, key: tuple[str, str], entry: _Cached) -> None:
        """Store an answer; when full, forget the expired ones, then the oldest tenth."""
        cache = self._cache
        cache.pop(key, None)
        if len(cache) >= self._max_entries:
            now = self._clock()
            for stale in [k for k, v in cache.items() if v.until <= now]:
                del cache[stale]
            if len(cache) >= self._max_entries * 9 // 10:
                for oldest in list(itertools.islice(cache, max(1, self._max_entries // 10))):
                    del cache[oldest]
        cache[key] = entry


def require_scopes(principal: Principal, needed: frozenset[str], operation: str) -> None:
    """Raises:
        InsufficientScope: listing the scopes the principal lacks.
    """
    missing = needed - principal.scopes
    if missing:
        raise InsufficientScope(sorted(missing), operation)


def challenge(error: AuthError, resource_metadata_url: str, default_scope: str) -> str:
    """The WWW-Authenticate value for a 401 or 403 (RFC 6750 + RFC 9728)."""
    parts = []
    if error.error is not None:
        parts.append(f'error="{error.error}"')
    scope = error.scope or default_scope
    if scope:
        parts.append(f'scope="{scope}"')
    parts.append(f'resource_metadata="{resource_metadata_url}"')
    if error.error is not None:
        description = error.description.replace('"', "'")
        parts.append(f'error_description="{description}"')
    return "Bearer " + ", ".join(parts)
