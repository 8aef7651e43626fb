"""The verified caller (Principal): built from introspection claims or a token format, checked
for audience and scopes. Pure; the resolver (resolver.py) decides which way a token goes.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import AuthError, InsufficientScope
from gateway.spec.compiled import CompiledService


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


def check_format(service: CompiledService, token: str) -> None:
    """Refuse a token that cannot be the service's before anything is sent anywhere.

    Raises:
        AuthError: the token has the shape of a kind the service refuses, or does not have the
            service's token format.
    """
    for refused in service.spec.auth.refuse_patterns:
        if re.fullmatch(refused.pattern, token):
            raise AuthError(refused.message, error="invalid_token")
    pattern = service.spec.auth.token_pattern
    if pattern is not None and not re.fullmatch(pattern, token):
        raise AuthError(f"This is not a {service.spec.title} token", error="invalid_token")


def passthrough_principal(service: CompiledService, token: str) -> Principal:
    """A principal for a token the upstream will judge: granted the service's default scopes,
    else every scope it declares, else every scope its tools need."""
    granted = _PASSTHROUGH_SCOPES.get(service)
    if granted is None:  # once a service: for a catalog of 1,000 tools, 0.5 M instructions
        granted = _PASSTHROUGH_SCOPES[service] = frozenset(
            service.spec.auth.default_scopes or [s.name for s in service.spec.scopes]
            or [s for t in service.tools.values() for s in t.scopes])
    return Principal(token, None, None, granted)


_PASSTHROUGH_SCOPES: Final = weakref.WeakKeyDictionary[CompiledService, frozenset[str]]()
"""Per loaded service, forgotten with it after a reload."""


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
    if wanted is None:
        return
    if not principal.audiences:
        if service.spec.auth.require_audience:
            raise AuthError("The token names no audience; this server accepts only tokens "
                            "issued for it", error="invalid_token")
        return
    accepted = {a.replace("{resource}", resource)
                for a in ([wanted] if isinstance(wanted, str) else wanted)}
    if accepted.isdisjoint(principal.audiences):
        raise AuthError("The token was issued for another resource", error="invalid_token")


def require_scopes(held: frozenset[str], needed: frozenset[str], operation: str) -> None:
    """Raises:
        InsufficientScope: listing the scopes the caller lacks.
    """
    missing = needed - held
    if missing:
        raise InsufficientScope(sorted(missing), operation)


