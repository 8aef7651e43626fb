"""The upstream wire: a pooled HTTP client behind a two-call interface (one per service and one
for authorization servers, see pools.py). An edge module, used only by the upstream client.

Two clients can carry it (setting `upstream_transport`):

- `aiohttp` (the default): the upstream lane (direct.py) for the common exchanges, and
  aiohttp's client and pool for the rest. On one `list_feedback` page aiohttp's client costs
  about 0.35 ms of CPU per call where httpx costs about 1 ms, and its pool holds its throughput
  as concurrency rises (bench/README.md has the measurements).
- `httpx`: httpx's own client and pool, for deployments that want httpx's behaviour; it is also
  covered by the tests with respx.

Both read a body to a byte bound (counting decoded bytes, so a compressed body cannot expand past
it), send URLs exactly as built (a percent-encoded path segment stays encoded), never follow
redirects or keep cookies, never send a request a second time by themselves (the retry policy
is the gateway's, and never applies to writes), and turn their library's failures into one
`WireError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from gateway.errors import WireError
from gateway.records import record
from gateway.settings import Settings

CHUNK = 65_536


@record
class Answer:
    status: int
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: bytes


class Wire(Protocol):
    async def fetch(self, method: str, url: str, *, headers: Mapping[str, str],
                    body: bytes | None, max_bytes: int) -> Answer:
        """One exchange; the body is read whole, up to `max_bytes`.

        Raises:
            WireError: timeout, connection failure, broken exchange, or a body over the bound.
        """
        ...

    async def aclose(self) -> None: ...


async def read_bounded(body: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """A body read chunk by chunk (decoded), refused as soon as it grows over the bound."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > max_bytes:
            raise WireError("too_large", "the body grew over the bound")
        chunks.append(chunk)
    return b"".join(chunks)


def create_wire(settings: Settings, max_connections: int | None = None) -> Wire:
    """A pooled upstream client of `max_connections` (default: the setting). Each client
    library is imported only when chosen."""
    size = max_connections or settings.upstream_max_connections
    if settings.upstream_transport == "httpx":
        from gateway.upstream.httpx_wire import HttpxWire

        return HttpxWire(settings, size)
    from gateway.upstream.aiohttp_wire import AiohttpWire

    return AiohttpWire(settings, size)
