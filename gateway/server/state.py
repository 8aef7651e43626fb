"""The typed keys of the gateway app's state: what create_app and its lifecycle put in, and the
handlers read. Nothing here is per request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from aiohttp import web
from cachetools import LRUCache, TTLCache

from gateway.auth.resolver import TokenResolver
from gateway.calls.pipeline import Calls
from gateway.protocol.paging import Lists
from gateway.server.hosts import PublicHosts
from gateway.server.reload import LiveSpecs
from gateway.settings import Settings
from gateway.upstream.client import Upstream
from gateway.upstream.wire import Wire
from gateway.writes.limits import LimitStore

SETTINGS: Final = web.AppKey("settings", Settings)
SPECS: Final = web.AppKey("specs", LiveSpecs)
"""The spec tree the app serves, replaced whole by a reload: a request reads it once."""
CLOCK: Final = web.AppKey[Callable[[], datetime]]("clock")
WIRE: Final = web.AppKey[Wire]("wire")
"""An upstream client given to create_app instead of the one the settings choose."""
CALLS: Final = web.AppKey("calls", Calls)
"""The call pipeline; present once startup has opened the edges it needs."""
LIMITS: Final = web.AppKey("limits", LimitStore)
"""Write limits and single-use claims: this process's memory, or Redis shared by replicas."""
RESOLVER: Final = web.AppKey("resolver", TokenResolver)
UPSTREAM: Final = web.AppKey("upstream", Upstream)
SHAPED: Final = web.AppKey("shaped", LRUCache[Any, bytes])
"""Version-shaped results reused across calls (each page of a list, per scope set); bounded."""
LISTS: Final = web.AppKey("lists", Lists)
"""The lists callers page through, each made once per service, method and scope set."""
HOSTS: Final = web.AppKey("hosts", PublicHosts)
"""The Host values served and the public base URL answered as (the host guard's)."""
PUBLIC_BASE: Final = web.RequestKey("public_base", str)
"""The base URL a request is answered as: the configured public URL (or its loopback name),
never a Host value the gateway does not serve."""
AS_METADATA: Final = web.AppKey("as_metadata", TTLCache[str, dict[str, Any]])
"""Relayed authorization-server metadata documents, by source URL; bounded and short-lived."""
