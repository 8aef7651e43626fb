"""create_app(settings): routes, guards, the upstream client's lifecycle. The only aiohttp importer
on the request path.

Each request passes the guards in the order the transport spec implies: Origin (403), HTTP method
(405), Content-Type (415), Accept (406), size (413), JSON (400), credential (401), routing and
validation (JSON-RPC errors), scopes (403), then the call itself.
"""

from __future__ import annotations

import functools
import gc
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import structlog
from aiohttp import web
from cachetools import LRUCache, TTLCache
from mcp_types.jsonrpc import INVALID_REQUEST

from gateway.auth.principal import ANONYMOUS, Principal, TokenResolver, bearer_token, challenge
from gateway.calls.pipeline import CallOutcome, Dispatcher, needs_principal, server_info
from gateway.errors import (
    AuthError,
    AuthUnavailable,
    InsufficientScope,
    ProtocolError,
    ToolExecutionError,
)
from gateway.protocol.envelope import (
    Era,
    Inbound,
    decode,
    error_body,
    http_status,
    internal_error,
    route,
    shape_result,
)
from gateway.server.origin import origin_allowed
from gateway.settings import Settings, spec_environment
from gateway.spec.compiled import CompiledService, Registry
from gateway.spec.loader import load_tree
from gateway.upstream.client import Upstream
from gateway.upstream.wire import Wire, create_wire
from gateway.writes.audit import AuditLog
from gateway.writes.execution import WriteCalls
from gateway.writes.limits import LimitStore, MemoryLimits

SETTINGS: Final = web.AppKey("settings", Settings)
REGISTRY: Final = web.AppKey("registry", list[Registry])
"""A one-item list: the current registry, swapped whole on reload."""
DISPATCHER: Final = web.AppKey("dispatcher", Dispatcher)
RESOLVER: Final = web.AppKey("resolver", TokenResolver)
UPSTREAM: Final = web.AppKey("upstream", Upstream)
SHAPED: Final = web.AppKey("shaped", LRUCache[Any, bytes])
"""Version-shaped results reused across calls (tools/list per scope set); bounded."""
CLOCK: Final = web.AppKey[Callable[[], datetime]]("clock")
WIRE: Final = web.AppKey[Wire]("wire")
"""An upstream client given to create_app instead of the one the settings choose."""

log = structlog.get_logger("gateway")
WELL_KNOWN_PRM: Final = "/.well-known/oauth-protected-resource"
WELL_KNOWN_AS: Final = "/.well-known/oauth-authorization-server"
AS_METADATA_TTL_S: Final = 300.0
AS_METADATA: Final = web.AppKey("as_metadata", TTLCache[str, dict[str, Any]])
_JSON: Final = "application/json"


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, registry: Registry | None = None, *,
               clock: Callable[[], datetime] = utc_now,
               wire: Wire | None = None) -> web.Application:
    """Build the gateway application. Raises SpecError when the spec tree is invalid.

    `wire` replaces the upstream client the settings choose (tests pass an in-memory one)."""
    if registry is None:
        registry = load_tree(settings.specs_dir, spec_environment())
    # Header bounds above aiohttp's 8 KiB defaults, so an oversized bearer token reaches the
    # auth check and gets a proper 401 challenge rather than a bare 400 from the parser.
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[request_context],
                          handler_args={"max_field_size": 32_768, "max_line_size": 32_768})
    app[SETTINGS] = settings
    app[REGISTRY] = [registry]
    app[CLOCK] = clock
    if wire is not None:
        app[WIRE] = wire
    app.cleanup_ctx.append(upstream_lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get(WELL_KNOWN_PRM, protected_resource_metadata)
    app.router.add_get(WELL_KNOWN_PRM + "{endpoint:/.*}", protected_resource_metadata)
    app.router.add_get(WELL_KNOWN_AS, authorization_server_metadata)
    app.router.add_get(WELL_KNOWN_AS + "{endpoint:/.*}", authorization_server_metadata)
    app.router.add_route("*", "/{path:.*}", mcp_endpoint)
    return app


async def upstream_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """The process's shared edges: one pooled upstream client, the limit store, the audit log.
    Closed, in reverse order, when the app stops."""
    settings = app[SETTINGS]
    clock = app[CLOCK]

    def seconds() -> float:
        return clock().timestamp()

    key = settings.secret_key.get_secret_value().encode() or secrets.token_bytes(32)
    wire = app.get(WIRE) or create_wire(settings)
    upstream = Upstream(wire, settings)
    limits = await open_limits(settings)
    audit = AuditLog.open(settings.audit_log_path, clock)
    writes = WriteCalls(upstream, limits, audit, key, seconds)
    app[DISPATCHER] = Dispatcher(settings, upstream, clock, writes, key)
    app[UPSTREAM] = upstream
    app[AS_METADATA] = TTLCache(maxsize=64, ttl=AS_METADATA_TTL_S)
    app[SHAPED] = LRUCache(maxsize=1024)
    app[RESOLVER] = TokenResolver(upstream.introspect, seconds)
    try:
        yield
    finally:
        audit.close()
        await limits.close()
        await wire.aclose()


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


async def open_limits(settings: Settings) -> LimitStore:
    """Redis when configured (limits hold across replicas), else this process's memory."""
    if settings.redis_url is None:
        return MemoryLimits()
    from gateway.writes.redis_store import RedisLimits  # an optional edge: only with redis_url

    return await RedisLimits.connect(settings.redis_url.get_secret_value())


@web.middleware
async def request_context(request: web.Request, handler: Any) -> web.StreamResponse:
    """Bind a request id to every log line of the request and echo it to the caller."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else (
        f"{random.getrandbits(128):032x}")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response: web.StreamResponse = await handler(request)
    response.headers["X-Request-Id"] = request_id
    return response


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY][0]
    ready = DISPATCHER in request.app
    return web.json_response(
        {"status": "ready" if ready else "starting",
         "services": {s.name: len(s.tools) for s in registry.services}},
        status=200 if ready else 503,
    )


def public_base(request: web.Request) -> str:
    configured = request.app[SETTINGS].public_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


def _discovery_service(request: web.Request) -> CompiledService | None:
    """The service a well-known document is asked for: by its endpoint path suffix, or the
    root service for the root form."""
    registry = request.app[REGISTRY][0]
    endpoint = request.match_info.get("endpoint")
    if endpoint:
        return registry.by_endpoint.get(endpoint)
    root = request.app[SETTINGS].root_service
    if root is not None:
        return registry.get(root)
    return registry.services[0] if len(registry.services) == 1 else None


async def authorization_server_metadata(request: web.Request) -> web.Response:
    """The service's authorization-server metadata (RFC 8414), relayed and cached briefly."""
    service = _discovery_service(request)
    source = service.spec.auth.authorization_server_metadata if service else None
    if service is None or source is None:
        return web.json_response({"error": "not_found"}, status=404)
    cache = request.app[AS_METADATA]
    document = cache.get(source)
    if document is None:
        try:
            document = await request.app[UPSTREAM].fetch_document(source)
        except ToolExecutionError as exc:
            return web.json_response({"error": "temporarily_unavailable",
                                      "error_description": exc.message}, status=503,
                                     headers={"Retry-After": "5"})
        cache[source] = document
    return web.json_response(document, headers={"Cache-Control": "max-age=300"})


async def protected_resource_metadata(request: web.Request) -> web.Response:
    """RFC 9728 metadata for one service endpoint (or the root service)."""
    service = _discovery_service(request)
    if service is None:
        return web.json_response({"error": "not_found"}, status=404)
    base = public_base(request)
    return web.json_response({
        "resource": base + service.spec.endpoint,
        "authorization_servers": service.spec.auth.authorization_servers,
        "scopes_supported": [s.name for s in service.spec.scopes],
        "bearer_methods_supported": ["header"],
        "resource_name": service.spec.title,
    })


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=_JSON,
                        headers=headers)


def _plain_error(status: int, code: int, message: str,
                 headers: dict[str, str] | None = None) -> web.Response:
    return _json({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}},
                 status, headers)


async def mcp_endpoint(request: web.Request) -> web.Response:
    """POST <service endpoint>: one JSON-RPC message in, one answer out."""
    service = request.app[REGISTRY][0].by_endpoint.get(request.path)
    if service is None:
        return web.json_response({"error": "not_found", "path": request.path}, status=404)
    settings = request.app[SETTINGS]
    if not origin_allowed(request.headers.get("Origin"), settings):
        return _plain_error(403, INVALID_REQUEST, "Origin not allowed")
    if request.method != "POST":
        return _plain_error(405, INVALID_REQUEST, "Method not allowed: use POST",
                            {"Allow": "POST"})
    if request.content_type != _JSON:
        return _plain_error(415, INVALID_REQUEST, "Content-Type must be application/json")
    if not _accepts_json(request.headers.get("Accept")):
        return _plain_error(406, INVALID_REQUEST,
                            "Accept must include application/json and text/event-stream")
    if (request.content_length or 0) > settings.max_body_bytes:
        return _plain_error(413, INVALID_REQUEST, "Request body too large")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _plain_error(413, INVALID_REQUEST, "Request body too large")
    started = time.perf_counter()
    try:
        data = decode(raw, max_depth=settings.max_json_depth)
    except ProtocolError as exc:
        return _json(error_body(exc), http_status(exc, "legacy"))
    return await _serve(request, service, data, started)


@functools.lru_cache(maxsize=256)  # a client sends the same Accept on every request
def _accepts_json(accept: str | None) -> bool:
    if accept is None:
        return True
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & {_JSON, "application/*", "*/*"})


async def _serve(request: web.Request, service: CompiledService, data: Any,
                 started: float) -> web.Response:
    method = data.get("method") if isinstance(data, dict) else None
    params = data.get("params") if isinstance(data, dict) else None
    request_id = data.get("id") if isinstance(data, dict) else None
    era: Era = "legacy"
    tool: str | None = params.get("name") if method == "tools/call" and isinstance(
        params, dict) else None
    try:
        principal = await _principal(request, service, str(method or ""), params)
        headers = request.headers  # case-insensitive, and it keeps repeated headers
        inbound = route(data, headers, _raw_headers(request))  # read only in the modern era
        era = inbound.era
        if inbound.is_notification:
            return web.Response(status=202)
        outcome = await request.app[DISPATCHER].handle(
            inbound, service, principal, traceparent=request.headers.get("traceparent"),
            headers=headers)
        result = _shaped(request.app, inbound, service, outcome)
        _log_call(service, str(method), tool, "error" if outcome.result.get("isError") else "ok",
                  started, outcome.upstream_status)
        # The response is assembled around the result's JSON: what is already encoded (a
        # reused result, a tool's structuredContent) is not encoded again.
        return web.Response(body=b"".join((b'{"jsonrpc":"2.0","id":', orjson.dumps(inbound.id),
                                           b',"result":', *result, b"}")), content_type=_JSON)
    except AuthError as exc:
        _log_call(service, str(method), tool, exc.error or "unauthenticated", started, None)
        return _auth_failure(request, service, exc, request_id)
    except AuthUnavailable as exc:
        _log_call(service, str(method), tool, "auth_unavailable", started, None)
        return _json({"jsonrpc": "2.0", "id": request_id if _usable_id(request_id) else None,
                      "error": {"code": -32603, "message": str(exc)}}, 503,
                     {"Retry-After": "5"})
    except ProtocolError as exc:
        if exc.request_id is None and _usable_id(request_id):
            exc.request_id = request_id
        _log_call(service, str(method), tool, f"protocol_error {exc.code}", started, None)
        return _json(error_body(exc), http_status(exc, era))
    except Exception:
        log.exception("unhandled_error", service=service.name, method=method)
        return _json(internal_error(request_id if _usable_id(request_id) else None))


async def _principal(request: web.Request, service: CompiledService, method: str,
                     params: Any) -> Principal:
    """The verified caller. Methods that need none (initialize, discover, ping, the anonymous
    tools) still work with a missing, bad or uncheckable token, so a client can always connect
    and prove the server is reachable."""
    needed = needs_principal(method, params, service)
    try:
        token = bearer_token(request.headers.get("Authorization"))
        if token is not None:
            return await request.app[RESOLVER].resolve(
                service, token, public_base(request) + service.spec.endpoint)
    except (AuthError, AuthUnavailable):
        if needed:
            raise
        return ANONYMOUS
    if needed:
        raise AuthError(f"{service.spec.title} needs a bearer token for {method or 'this'}")
    return ANONYMOUS


def _auth_failure(request: web.Request, service: CompiledService, exc: AuthError,
                  request_id: Any) -> web.Response:
    metadata_url = public_base(request) + WELL_KNOWN_PRM + service.spec.endpoint
    default_scope = " ".join(s.name for s in service.spec.scopes)
    status = 403 if isinstance(exc, InsufficientScope) else 401
    data: dict[str, Any] = {"reason": exc.error or "missing_token"}
    if isinstance(exc, InsufficientScope):
        data["required_scopes"] = exc.missing
    body = {"jsonrpc": "2.0", "id": request_id if _usable_id(request_id) else None,
            "error": {"code": INVALID_REQUEST, "message": exc.description, "data": data}}
    return _json(body, status, {"WWW-Authenticate": challenge(exc, metadata_url, default_scope)})


def _usable_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _shaped(app: web.Application, inbound: Inbound, service: CompiledService,
            outcome: CallOutcome) -> tuple[bytes, ...]:
    """The version-shaped result as JSON, in pieces to join. Results that depend only on the
    caller's scopes (tools/list) are shaped and encoded once per service, scope set and
    version; a tool's structuredContent, encoded once already, is spliced in."""
    if outcome.structured is not None:
        rest = {k: v for k, v in outcome.result.items() if k != "structuredContent"}
        head = orjson.dumps(shape_result(inbound, rest, server_info(service),
                                         ttl_ms=outcome.ttl_ms, cache_scope=outcome.cache_scope,
                                         validated=True))
        return head[:-1], b',"structuredContent":', outcome.structured, b"}"
    if outcome.reusable is None:
        return (orjson.dumps(shape_result(inbound, outcome.result, server_info(service),
                                          ttl_ms=outcome.ttl_ms,
                                          cache_scope=outcome.cache_scope)),)
    key = (id(service), outcome.reusable, inbound.version, inbound.era)
    shaped = app[SHAPED].get(key)
    if shaped is None:
        shaped = orjson.dumps(shape_result(inbound, outcome.result, server_info(service),
                                           ttl_ms=outcome.ttl_ms,
                                           cache_scope=outcome.cache_scope))
        app[SHAPED][key] = shaped
    return (shaped,)


def _raw_headers(request: web.Request) -> Iterator[tuple[str, str]]:
    """Header lines as sent, so a repeated routing header can be seen; decoded when read."""
    return ((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)



def _log_call(service: CompiledService, method: str, tool: str | None, outcome: str,
              started: float, upstream_status: int | None) -> None:
    log.info("mcp_request", service=service.name, method=method, tool=tool, outcome=outcome,
             upstream_status=upstream_status,
             duration_ms=round((time.perf_counter() - started) * 1000, 2))
