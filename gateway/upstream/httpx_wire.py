"""The selectable upstream client (`GATEWAY_UPSTREAM_TRANSPORT=httpx`): httpx's client and pool
behind the Wire interface. An edge; the only module that imports httpx.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from gateway.errors import WireError
from gateway.settings import Settings
from gateway.upstream.wire import Answer, read_bounded


class HttpxWire:
    """httpx's client and pool."""

    def __init__(self, settings: Settings, max_connections: int) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout_s,
                                  connect=settings.upstream_connect_timeout_s),
            # httpx sends a request again only when its connection failed before anything was
            # sent (retries=0 on the transport): safe for writes.
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=min(settings.upstream_max_keepalive,
                                                              max_connections)),
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
                raw = await read_bounded(response.aiter_bytes(), max_bytes)
                return Answer(response.status_code, response.headers, raw)
        except httpx.TimeoutException as exc:
            raise WireError("timeout", type(exc).__name__) from exc
        except httpx.ConnectError as exc:
            raise WireError("connect", type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise WireError("broken", type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
