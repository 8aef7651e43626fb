"""The HTTP face of auth: the bearer token of an Authorization header, and the WWW-Authenticate
challenge of a 401 or 403 (RFC 6750, RFC 9728). Pure.
"""

from __future__ import annotations

import re
from typing import Final

from gateway.errors import AuthError

MAX_TOKEN_LENGTH: Final = 4096


_TOKEN_CHARS: Final = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token


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
