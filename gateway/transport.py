"""An httpx transport that sends over aiohttp's client: an edge module, used only by upstream.py.

httpx keeps its API, error classes and response decoding (the rest of the gateway and respx
see plain httpx), while the connection pool is aiohttp's, which holds its throughput as
concurrency rises where httpx's default pool falls off (see bench/README.md). URLs are passed
already encoded, so a percent-encoded path segment is sent exactly as built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
from yarl import URL

CHUNK = 65_536


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise httpx.ReadError(str(exc)) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (created lazily on the running loop) behind httpx."""

    def __init__(self, *, max_connections: int, keepalive_s: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300,
                                             keepalive_timeout=self._keepalive_s)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  cookie_jar=aiohttp.DummyCookieJar(),
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.get("connect"),
                                        sock_read=timeouts.get("read"))
        content = request.content if request.method not in ("GET", "HEAD") else None
        try:
            response = await self._open().request(
                request.method, URL(str(request.url), encoded=True),
                headers=[(k.decode("latin-1"), v.decode("latin-1"))
                         for k, v in request.headers.raw if k.lower() != b"host"],
                data=content or None, allow_redirects=False, timeout=timeout)
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=[(k, v) for k, v in response.raw_headers],
            stream=_Body(response),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
