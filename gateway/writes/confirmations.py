"""Two-phase writes: signed, single-use confirmation tokens bound to tool, arguments, principal and
expiry. Pure: the key, the clock and the single-use store come in as arguments.

Token = base64url(payload) "." base64url(HMAC-SHA256(key, payload)). The payload names the tool,
a digest of the canonical arguments (the token itself excluded), the principal's subject and
account, the expiry and a random nonce. Redeeming checks all of them, then claims the nonce once.
The MRTR `requestState` of a call that asks its client for input is sealed the same way (under a
key of its own, with extra claims saying what it is for).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

CONFIRMATION_ARGUMENT: Final = "confirmation_token"
MAX_TOKEN_LENGTH: Final = 1024


class ConfirmationRefused(Exception):
    """A confirmation token that cannot execute this call; `reason` is safe to show the model."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Confirmation:
    token: str
    expires_at: int
    nonce: str


def arguments_digest(tool: str, arguments: Mapping[str, Any]) -> str:
    """A digest of the call: tool name and canonical arguments, the confirmation token excluded."""
    canonical = orjson.dumps({k: v for k, v in arguments.items() if k != CONFIRMATION_ARGUMENT},
                             option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(tool.encode() + b"\x00" + canonical).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, *, tool: str, arguments: Mapping[str, Any], subject: str | None,
          account: str | None, now: float, ttl_s: int,
          extra: Mapping[str, Any] | None = None) -> Confirmation:
    """A confirmation token for exactly this call by exactly this principal; `extra` claims
    (never t, d, s, a, e or n) travel with it and come back from `claims_of`."""
    nonce = secrets.token_urlsafe(12)
    expires_at = int(now) + ttl_s
    payload = orjson.dumps({**(extra or {}), "t": tool, "d": arguments_digest(tool, arguments),
                            "s": subject, "a": account, "e": expires_at, "n": nonce})
    signature = hmac.new(key, payload, hashlib.sha256).digest()
    return Confirmation(f"{_b64(payload)}.{_b64(signature)}", expires_at, nonce)


def verify(key: bytes, token: Any, *, tool: str, arguments: Mapping[str, Any],
           subject: str | None, account: str | None, now: float) -> tuple[str, int]:
    """Check a token against this call; returns its nonce and expiry, to be claimed once.

    Raises:
        ConfirmationRefused: tampered, expired, for another tool, principal or arguments.
    """
    claims = claims_of(key, token, tool=tool, arguments=arguments, subject=subject,
                       account=account, now=now)
    return str(claims.get("n")), int(claims.get("e", 0))


def claims_of(key: bytes, token: Any, *, tool: str, arguments: Mapping[str, Any],
              subject: str | None, account: str | None, now: float,
              what: str = "The confirmation token",
              max_length: int = MAX_TOKEN_LENGTH) -> dict[str, Any]:
    """Every claim of a token checked against this call (`what` names it in refusals).

    Raises:
        ConfirmationRefused: tampered, expired, for another tool, principal or arguments.
    """
    if not isinstance(token, str) or not 0 < len(token) <= max_length or "." not in token:
        raise ConfirmationRefused(f"{what} is malformed.")
    encoded, _, signature = token.partition(".")
    try:
        payload = _unb64(encoded)
        given = _unb64(signature)
    except (ValueError, TypeError):
        raise ConfirmationRefused(f"{what} is malformed.") from None
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), given):
        raise ConfirmationRefused(f"{what} was altered or is not from this server.")
    claims = orjson.loads(payload)
    if claims.get("t") != tool:
        raise ConfirmationRefused(f"{what} is for {claims.get('t')}, not {tool}.")
    if claims.get("s") != subject or claims.get("a") != account:
        raise ConfirmationRefused(f"{what} was issued to another user or account.")
    if claims.get("d") != arguments_digest(tool, arguments):
        raise ConfirmationRefused(
            "The arguments differ from the previewed ones; preview the new arguments first.")
    if now >= int(claims.get("e", 0)):
        raise ConfirmationRefused(f"{what} has expired; preview the change again.")
    return dict(claims)
