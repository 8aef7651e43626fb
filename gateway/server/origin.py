"""The Origin allow-list that protects local servers from DNS rebinding. Pure."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from gateway.settings import Settings

LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def origin_allowed(origin: str | None, settings: Settings) -> bool:
    """No Origin (a non-browser client) is allowed; a browser origin must be on the list."""
    if origin is None:
        return True
    if origin in settings.allowed_origins:
        return True
    if not settings.allow_loopback_origins:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.hostname in LOOPBACK_HOSTS
