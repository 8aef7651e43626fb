"""Bearer extraction, token -> Principal, scope checks, and the WWW-Authenticate challenges. Pure.

Resolvers that need the network (introspection) reach this module as injected callables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from gateway.errors import AuthError, InsufficientScope
from gateway.registry import CompiledService

MAX_TOKEN_LENGTH: Final = 4096
_TOKEN_CHARS: Final = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as verified: the only source of identity on the request path."""

    token: str | None
    subject: str | None
    account: str | None
    scopes: frozenset[str]

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


def resolve_passthrough(service: CompiledService, token: str) -> Principal:
    """A principal for a token the upstream will judge: the token format is checked here.

    Raises:
        AuthError: the token does not have the service's token format.
    """
    pattern = service.spec.auth.token_pattern
    if pattern is not None and not re.fullmatch(pattern, token):
        raise AuthError(f"This is not a {service.spec.title} token", error="invalid_token")
    granted = service.spec.auth.default_scopes or [s.name for s in service.spec.scopes]
    scopes = frozenset(granted) | frozenset(s for t in service.tools.values() for s in t.scopes
                                            if not service.spec.scopes)
    return Principal(token, None, None, scopes)


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
