"""The upstream wire: one pooled HTTP client per process behind a two-call interface. An edge
module, used only by upstream.py.

Two clients can carry it (setting `upstream_transport`):

- `aiohttp` (the default): aiohttp's client and pool. On one `list_feedback` page it costs about
  0.35 ms of CPU per call where httpx costs about 1 ms, and its pool holds its throughput as
  concurrency rises (bench/README.md has the measurements).
- `httpx`: httpx's own client and pool, for deployments that want httpx's behaviour; it is also
  the client the test suite fakes with respx.

Both read a body to a byte bound (counting decoded bytes, so a compressed body cannot expand past
it), send URLs exactly as built (a percent-encoded path segment stays encoded), never follow
redirects or keep cookies, and turn their library's failures into one `WireError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

from gateway.errors import WireError
from gateway.settings import Settings

CHUNK = 65_536


@dataclass(frozen=True, slots=True)
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


class AiohttpWire:
    """aiohttp's client: one session, created lazily on the running loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            settings = self._settings
            connector = aiohttp.TCPConnector(limit=settings.upstream_max_connections,
                                             ttl_dns_cache=300, keepalive_timeout=30.0)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
                timeout=aiohttp.ClientTimeout(total=None,
                                              connect=settings.upstream_connect_timeout_s,
                                              sock_read=settings.upstream_timeout_s))
        return self._session

    async def fetch(self, method: str, url: str, *, headers: Mapping[str, str],
                    body: bytes | None, max_bytes: int) -> Answer:
        try:
            async with self._open().request(method, URL(url, encoded=True), headers=headers,
                                            data=body, allow_redirects=False) as response:
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise WireError("too_large", "the declared length is over the bound")
                if declared is not None and "Content-Encoding" not in response.headers:
                    raw = await response.read()  # the common case: a known, small body
                else:
                    raw = await _bounded(response.content.iter_chunked(CHUNK), max_bytes)
                return Answer(response.status, response.headers, raw)
        except aiohttp.ClientConnectorError as exc:
            raise WireError("connect", type(exc).__name__) from exc
        except TimeoutError as exc:
            raise WireError("timeout", type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise WireError("broken", type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _bounded(body: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """A body read chunk by chunk (decoded), refused as soon as it grows over the bound."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > max_bytes:
            raise WireError("too_large", "the body grew over the bound")
        chunks.append(chunk)
    return b"".join(chunks)


class HttpxWire:
    """httpx's client and pool."""

    def __init__(self, settings: Settings) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout_s,
                                  connect=settings.upstream_connect_timeout_s),
            limits=httpx.Limits(max_connections=settings.upstream_max_connections,
                                max_keepalive_connections=settings.upstream_max_keepalive),
            follow_redirects=False,
            trust_env=False,
            # A shared client must never hand one caller's cookie to the next: refuse them all.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )

    async def fetch(self, method: str, url: str, *, headers: Mapping[str, str],
                    body: bytes | None, max_bytes: int) -> Answer:
        try:
            async with self._client.stream(method, url, headers=headers,
                                           content=body) as response:
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise WireError("too_large", "the declared length is over the bound")
                raw = await _bounded(response.aiter_bytes(), max_bytes)
                return Answer(response.status_code, response.headers, raw)
        except httpx.TimeoutException as exc:
            raise WireError("timeout", type(exc).__name__) from exc
        except httpx.ConnectError as exc:
            raise WireError("connect", type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise WireError("broken", type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def create_wire(settings: Settings) -> Wire:
    """The one pooled upstream client of a process."""
    if settings.upstream_transport == "httpx":
        return HttpxWire(settings)
    return AiohttpWire(settings)
