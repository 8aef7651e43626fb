"""The default upstream client: aiohttp's client and pool behind the Wire interface. An edge.

On one `list_feedback` page it costs about 0.35 ms of CPU per call where httpx costs about 1 ms,
and its pool holds its throughput as concurrency rises (bench/README.md). In front of it, the
upstream lane (direct.py, `upstream_fast_lane`) sends the common exchanges without aiohttp's
request and response objects; what the lane leaves, aiohttp's client sends.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from yarl import URL

from gateway.errors import WireError
from gateway.settings import Settings
from gateway.upstream.direct import DirectLane
from gateway.upstream.wire import CHUNK, Answer, read_bounded


class AiohttpWire:
    """aiohttp's client: one session, created lazily on the running loop."""

    def __init__(self, settings: Settings, max_connections: int) -> None:
        self._settings = settings
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._lane = (DirectLane(max_connections, settings.upstream_connect_timeout_s)
                      if settings.upstream_fast_lane else None)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            settings = self._settings
            connector = aiohttp.TCPConnector(limit=self._max_connections,
                                             ttl_dns_cache=300, keepalive_timeout=30.0)
            session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
                timeout=aiohttp.ClientTimeout(total=None,
                                              connect=settings.upstream_connect_timeout_s,
                                              sock_read=settings.upstream_timeout_s))
            # aiohttp sends a PUT or DELETE a second time, unasked, when a kept-alive connection
            # turns out closed; that may apply a write twice. Off: the gateway retries reads
            # itself and never retries writes (retries.py). A documented attribute of the
            # session's state (ClientSession.ATTRS), set once here.
            session._retry_connection = False
            self._session = session
        return self._session

    async def fetch(self, method: str, url: str, *, headers: Mapping[str, str],
                    body: bytes | None, max_bytes: int) -> Answer:
        if self._lane is not None:
            answer = await self._lane.fetch(method, url, headers=headers, body=body,
                                            max_bytes=max_bytes)
            if answer is not None:
                return answer
        try:
            async with self._open().request(method, URL(url, encoded=True), headers=headers,
                                            data=body, allow_redirects=False) as response:
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise WireError("too_large", "the declared length is over the bound")
                if declared is not None and "Content-Encoding" not in response.headers:
                    raw = await response.read()  # the common case: a known, small body
                else:
                    raw = await read_bounded(response.content.iter_chunked(CHUNK), max_bytes)
                return Answer(response.status, response.headers, raw)
        except aiohttp.ClientConnectorError as exc:
            raise WireError("connect", type(exc).__name__) from exc
        except TimeoutError as exc:
            raise WireError("timeout", type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise WireError("broken", type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._lane is not None:
            self._lane.aclose()
        if self._session is not None:
            await self._session.close()
