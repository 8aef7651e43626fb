"""The HTTP face of auth: the bearer token of an Authorization header, and the WWW-Authenticate
challenge of a 401 or 403 (RFC 6750, RFC 9728). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from gateway.errors import AuthError

MAX_TOKEN_LENGTH: Final = 4096


_TOKEN_CHARS: Final = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token


def bearer_token(authorizations: Sequence[str]) -> str | None:
    """The token of a request's `Authorization: Bearer <token>` header (its values, as many as
    were sent), None when there is no such header.

    Raises:
        AuthError: more than one Authorization header: which credential counts would be up to
            each reader (this gateway, a proxy in front that checks the other one), and HTTP
            allows the field once; or a header that is not a well-formed bearer credential.
    """
    if not authorizations:
        return None
    if len(authorizations) > 1:
        raise AuthError(f"Send one Authorization header, not {len(authorizations)}",
                        error="invalid_request")
    scheme, _, token = authorizations[0].strip().partition(" ")
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
