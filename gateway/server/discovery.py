"""The OAuth discovery documents: protected-resource metadata (RFC 9728) for each service, and
the authorization-server metadata (RFC 8414) relayed where a service names one."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.errors import ToolExecutionError
from gateway.server.state import AS_METADATA, PUBLIC_BASE, SETTINGS, SPECS, UPSTREAM
from gateway.spec.compiled import CompiledService

WELL_KNOWN_PRM: Final = "/.well-known/oauth-protected-resource"
WELL_KNOWN_AS: Final = "/.well-known/oauth-authorization-server"
AS_METADATA_TTL_S: Final = 300.0


def add_discovery_routes(app: web.Application) -> None:
    app.router.add_get(WELL_KNOWN_PRM, protected_resource_metadata)
    app.router.add_get(WELL_KNOWN_PRM + "{endpoint:/.*}", protected_resource_metadata)
    app.router.add_get(WELL_KNOWN_AS, authorization_server_metadata)
    app.router.add_get(WELL_KNOWN_AS + "{endpoint:/.*}", authorization_server_metadata)


def public_base(request: web.Request) -> str:
    """The base URL the request is answered as (set by the host guard)."""
    return request[PUBLIC_BASE]


def metadata_url(public_base: str, service: CompiledService) -> str:
    """Where a client finds the metadata of the service it was refused by."""
    return public_base + WELL_KNOWN_PRM + service.spec.endpoint


def _discovery_service(request: web.Request) -> CompiledService | None:
    """The service a well-known document is asked for: by its endpoint path suffix, or the
    root service for the root form."""
    registry = request.app[SPECS].registry
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
    return web.json_response({
        "resource": public_base(request) + service.spec.endpoint,
        "authorization_servers": service.spec.auth.authorization_servers,
        "scopes_supported": [s.name for s in service.spec.scopes],
        "bearer_methods_supported": ["header"],
        "resource_name": service.spec.title,
    })
