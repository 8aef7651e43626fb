"""Which Host a request may name, and the public URL the gateway answers as. Pure.

The public URL is configuration, never the request: a token's audience is checked against it
and it is what challenges and discovery documents name, so a caller who sends `Host:
other.example` must not make the gateway speak as `other.example`. Without a configured public
URL the deployment is loopback-only: only loopback Host names are served, and the URL is taken
from them (http://127.0.0.1:8080 is the same server whatever port a local client used).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})


@functools.lru_cache(maxsize=256)  # clients send the same Host on every request
def host_name(host: str) -> str | None:
    """The name part of a Host header value (`[::1]:8080` -> `::1`), lower-cased; None when the
    value is not a well-formed host[:port]."""
    try:
        parts = urlsplit(f"//{host}")
        name, _ = parts.hostname, parts.port  # .port raises for a port that is not a number
    except ValueError:
        return None
    if not name or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return name


@dataclass(frozen=True)
class PublicHosts:
    """The Host header values this gateway serves, and the base URL it answers as."""

    public_url: str | None
    """Scheme, host and port clients use (https://mcp.example.com); None: loopback only."""
    allowed: frozenset[str] = frozenset()
    """Host header values (host[:port], lower case) accepted besides the public URL's own."""

    @classmethod
    def configured(cls, public_url: str | None, allowed_hosts: tuple[str, ...] = ()
                   ) -> PublicHosts:
        accepted = {h.strip().lower() for h in allowed_hosts if h.strip()}
        if public_url is not None:
            accepted.add(urlsplit(public_url).netloc.lower())
            public_url = public_url.rstrip("/")
        return cls(public_url, frozenset(accepted))

    def base_for(self, host: str | None, scheme: str = "http") -> str | None:
        """The base URL to answer a request that named `host` as, or None when this gateway
        does not serve that host (answered 421)."""
        if host is None:
            return None
        host = host.strip().lower()
        if self.public_url is not None:
            return self.public_url if host in self.allowed else None
        if host in self.allowed or host_name(host) in LOOPBACK_NAMES:
            return f"{scheme}://{host}"
        return None


def is_loopback_bind(host: str) -> bool:
    """Whether listening on `host` keeps the gateway reachable from this machine only."""
    return host.strip("[]").lower() in LOOPBACK_NAMES or host.startswith("127.")
