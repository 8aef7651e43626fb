"""Keys for each purpose, derived from the one configured secret (HKDF, RFC 5869). Pure.

Pseudonyms and confirmation tokens must not share a key: a value one of them exposes (a
pseudonym is shown to every caller) must never help forge or test the other. The MRTR request
state has a key of its own too: a state can never pass for a confirmation token, nor the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, Literal

Purpose = Literal["pseudonyms", "confirmations", "request-state"]
SALT: Final = b"mcp-gateway key derivation v1"


def derive_key(secret: bytes, purpose: Purpose) -> bytes:
    """A 32-byte key for one purpose (HKDF-SHA256 extract, then one block of expand)."""
    pseudorandom = hmac.new(SALT, secret, hashlib.sha256).digest()
    return hmac.new(pseudorandom, purpose.encode() + b"\x01", hashlib.sha256).digest()
