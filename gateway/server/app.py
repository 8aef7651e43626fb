"""create_app(settings): the gateway's aiohttp application, its routes, and the lifecycle of the
edges it opens (the pooled upstream client, the limit store, the audit log).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from aiohttp import web
from cachetools import LRUCache, TTLCache

from gateway.auth.resolver import IntrospectionBounds, TokenResolver
from gateway.calls.pipeline import Calls
from gateway.errors import StartupError
from gateway.keys import derive_key
from gateway.protocol.paging import Lists
from gateway.server.connections import set_server_header
from gateway.server.discovery import AS_METADATA_TTL_S, add_discovery_routes
from gateway.server.endpoint import mcp_endpoint
from gateway.server.front import front_door
from gateway.server.hosts import PublicHosts
from gateway.server.reload import LiveSpecs, reloading
from gateway.server.state import (
    AS_METADATA,
    CALLS,
    CLOCK,
    HOSTS,
    LIMITS,
    LISTS,
    RESOLVER,
    SETTINGS,
    SHAPED,
    SPECS,
    UPSTREAM,
    WIRE,
)
from gateway.settings import Settings, spec_environment
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree
from gateway.telemetry import tracing
from gateway.telemetry.metrics import exposition
from gateway.upstream.client import Upstream
from gateway.upstream.pools import WirePools
from gateway.upstream.wire import Wire
from gateway.writes.audit import AuditLog
from gateway.writes.execution import WriteCalls
from gateway.writes.limits import LimitStore, MemoryLimits

READY_CHECK_S: Final = 1.0
"""How long /readyz waits for Redis: a probe must answer quickly even when Redis hangs."""
SHAPED_RESULTS: Final = 1024
"""Encoded results kept for reuse (a page of a list per service, scope set and version)."""
LISTINGS: Final = 1024
"""Lists kept for paging (per service, list method and scope set)."""
HEADER_BYTES: Final = 32_768
"""Header bounds above aiohttp's 8 KiB defaults, so an oversized bearer token reaches the auth
check and gets a proper 401 challenge rather than a bare 400 from the parser."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, registry: Registry | None = None, *,
               clock: Callable[[], datetime] = utc_now, wire: Wire | None = None,
               reloadable: bool = False) -> web.Application:
    """Build the gateway application. `wire` replaces the upstream client the settings choose
    (tests pass an in-memory one). A `registry` given is served as is, unless `reloadable`
    says it was loaded from `settings.specs_dir`, which reloads then read again.

    Raises:
        SpecError: the spec tree is invalid (when no registry is given).
    """
    source = settings.specs_dir if registry is None or reloadable else None
    if registry is None:
        registry = load_tree(settings.specs_dir, spec_environment())
    hosts = PublicHosts.configured(settings.public_url, settings.allowed_hosts)
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[front_door(hosts)],
                          handler_args={"max_field_size": HEADER_BYTES,
                                        "max_line_size": HEADER_BYTES,
                                        # Compressed request bodies are refused (415), never
                                        # inflated: a small body could cost a gigabyte.
                                        "auto_decompress": False,
                                        "keepalive_timeout": settings.header_timeout_s})
    app[SETTINGS] = settings
    app[HOSTS] = hosts
    specs = LiveSpecs(registry, source, clock)
    app[SPECS] = specs
    app[CLOCK] = clock
    if wire is not None:
        app[WIRE] = wire
    app.cleanup_ctx.append(edges)
    app.cleanup_ctx.append(reloading(specs, watch=settings.specs_watch))
    app.on_response_prepare.append(set_server_header)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_discovery_routes(app)
    app.router.add_route("*", "/{path:.*}", mcp_endpoint)
    return app


async def edges(app: web.Application) -> AsyncIterator[None]:
    """The process's shared edges: one pooled upstream client, the limit store, the audit log.
    Closed, in reverse order, when the app stops."""
    settings = app[SETTINGS]
    clock = app[CLOCK]

    # The clock as seconds, read on every token check: the default clock's instant without a
    # datetime made and converted each time (about 1 us).
    seconds: Callable[[], float] = (time.time if clock is utc_now
                                    else lambda: clock().timestamp())

    if settings.tracing and not tracing.enabled():
        try:
            tracing.enable()
        except ImportError as exc:
            raise StartupError("GATEWAY_TRACING needs the tracing extra: pip install "
                               "'mcp-gateway[tracing]'") from exc
    secret = settings.secret_key.get_secret_value().encode() or secrets.token_bytes(32)
    pools = WirePools(settings, app.get(WIRE))
    upstream = Upstream(pools, settings)
    limits = await open_limits(settings)
    audit_key = settings.audit_key.get_secret_value().encode()
    if settings.audit_log_path is not None and not audit_key:
        # Warn, and chain under the empty key. Not a random key, as for confirmations: a key
        # that dies with the process leaves no one able to verify the file, and each worker
        # would chain under one of its own. Not a refusal to start: the records keep being
        # written and their structure stays checkable; only their authenticity needs the key.
        structlog.get_logger("gateway").warning(
            "audit_log_without_key", path=str(settings.audit_log_path),
            detail="audit records can be rewritten by anyone able to edit the file; set "
                   "GATEWAY_AUDIT_KEY so that `mcp-gateway audit verify` can tell")
    try:
        audit = AuditLog.open(settings.audit_log_path, audit_key, clock)
    except OSError as exc:
        await limits.close()
        raise StartupError(f"GATEWAY_AUDIT_LOG_PATH: {settings.audit_log_path} cannot be "
                           f"written ({exc.strerror or exc})") from exc
    writes = WriteCalls(upstream, limits, audit, derive_key(secret, "confirmations"), seconds)
    app[CALLS] = Calls(settings, upstream, writes, derive_key(secret, "pseudonyms"), clock,
                       state_key=derive_key(secret, "request-state"))
    app[UPSTREAM] = upstream
    app[LIMITS] = limits
    app[AS_METADATA] = TTLCache(maxsize=64, ttl=AS_METADATA_TTL_S)
    app[SHAPED] = LRUCache(maxsize=SHAPED_RESULTS)
    app[LISTS] = Lists(settings.list_page_size, LRUCache(maxsize=LISTINGS))
    app[RESOLVER] = TokenResolver(upstream.introspect, seconds, IntrospectionBounds(
        settings.introspections_per_address_per_minute, settings.introspections_per_minute,
        settings.introspection_addresses))
    try:
        yield
    finally:
        audit.close()
        await limits.close()
        await pools.aclose()


async def open_limits(settings: Settings) -> LimitStore:
    """Redis when configured (limits hold across replicas), else this process's memory."""
    if settings.redis_url is None:
        return MemoryLimits()
    from gateway.writes.redis_store import RedisLimits  # an optional edge: only with redis_url

    return await RedisLimits.connect(settings.redis_url.get_secret_value())


YOUNG_COLLECTION_THRESHOLD: Final = 20_000


async def tune_collector(_app: web.Application) -> None:
    """For a serving process. What startup built (the compiled registry, validators, imported
    modules) lives as long as the process, so it is moved out of the cycle collector's sight;
    otherwise every full collection walks it again (about 0.5 ms of CPU per de-identified
    `list_feedback` call). And the youngest generation is collected after 20,000 allocations
    rather than 700: a page of rows allocates thousands of containers that reference counting
    frees anyway, and collecting in the middle of them cost about 75 us a call
    (bench/README.md). Garbage cycles are still collected, a little later."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics; behind a bearer token when GATEWAY_METRICS_TOKEN is set."""
    token = request.app[SETTINGS].metrics_token.get_secret_value()
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the specs are loaded and, where Redis is configured, Redis answers: without it
    writes cannot be confirmed. Each component is reported."""
    app = request.app
    components: dict[str, Any] = {"specs": app[SPECS].describe()}
    ready = CALLS in app
    if LIMITS in app and app[SETTINGS].redis_url is not None:
        try:
            async with asyncio.timeout(READY_CHECK_S):
                healthy = await app[LIMITS].healthy()
        except TimeoutError:
            healthy = False
        components["redis"] = {"ok": healthy}
        ready = ready and healthy
    else:
        components["redis"] = {"ok": True, "detail": "not configured: limits are per process"}
    return web.json_response(
        {"status": "ready" if ready else ("starting" if CALLS not in app else "not_ready"),
         "services": components["specs"]["services"], "components": components},
        status=200 if ready else 503)
