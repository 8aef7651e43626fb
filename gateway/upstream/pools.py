"""One pooled upstream client per service, and one for authorization servers. An edge.

Separate pools are the first bulkhead: 250 calls hung on one service's endpoint fill that
service's pool only; the other services, and the token checks every request needs, keep theirs.
"""

from __future__ import annotations

from typing import Final

from gateway.settings import Settings
from gateway.upstream.wire import Wire, create_wire

AUTHORIZATION_SERVERS: Final = "\x00authorization servers"
"""The pool of introspection and discovery requests (not a service name: those are words)."""


class WirePools:
    """The clients, made on first use. `shared`, when given, carries every pool (tests)."""

    def __init__(self, settings: Settings, shared: Wire | None = None) -> None:
        self._settings = settings
        self._shared = shared
        self._wires: dict[str, Wire] = {}

    def of(self, pool: str) -> Wire:
        if self._shared is not None:
            return self._shared
        found = self._wires.get(pool)
        if found is None:
            size = (self._settings.introspection_max_connections
                    if pool == AUTHORIZATION_SERVERS else None)
            found = self._wires[pool] = create_wire(self._settings, size)
        return found

    async def aclose(self) -> None:
        for wire in [*self._wires.values(), *([self._shared] if self._shared else [])]:
            await wire.aclose()
        self._wires.clear()
