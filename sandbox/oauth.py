"""Token introspection (RFC 7662) and authorization-server metadata (RFC 8414).

`POST /api/oauth/introspect` and `GET /.well-known/oauth-authorization-server` (upstream-retently.md
§17.5) serve both token families: the sandbox is one authorization server for Retently and for
Refiner beside the vendor (upstream-refiner.md §10). No client authentication is asked for.
Registration, authorization and token endpoints live in `oauth_flow`.
"""

from __future__ import annotations

from aiohttp import web

from sandbox import oauth_flow
from sandbox.http import SANDBOX, base_url, reply

RETENTLY_SCOPES = (
    "feedback:read feedback:tag feedback:topic feedback:curate feedback:delete feedback:reply "
    "feedback:import customers:read customers:write campaigns:read campaigns:write reports:read "
    "surveys:send suppressions:read suppressions:write templates:read outbox:read outbox:write "
    "integrations:read team:read pii:read pii:write"
).split()
REFINER_SCOPES = ["mcp:projects-read", "mcp:forms-read", "mcp:responses-read", "mcp:reporting-read"]


async def _token_and_resource(request: web.Request) -> tuple[str, str | None]:
    form = await request.post()
    token = form.get("token")
    resource = form.get("resource")
    return (
        token if isinstance(token, str) else "",
        resource if isinstance(resource, str) and resource else None,
    )


def _audience(configured: tuple[str, ...], resource: str | None) -> list[str]:
    """The token's audiences, plus the `resource` the caller names.

    Sandbox tokens are minted for whichever gateway introspects them, so a gateway that
    checks `aud` against its own resource URL works on any port.
    """
    audience = list(configured)
    if resource and resource not in audience:
        audience.append(resource)
    return audience


async def introspect(request: web.Request) -> web.Response:
    """RFC 7662 for both token families; `account_id` for Retently, `projects` for Refiner."""
    sandbox = request.app[SANDBOX]
    presented, resource = await _token_and_resource(request)
    if not presented:
        return reply({"error": "invalid_request", "error_description": "token is required"}, 400)
    now = sandbox.now()
    retently = sandbox.retently_tokens.get(presented)
    if retently is not None and retently.active(now):
        return reply(
            {
                "active": True,
                "scope": retently.scope,
                "sub": retently.sub,
                "account_id": retently.account_id,
                "exp": retently.exp,
                "client_id": retently.client_id,
                "token_type": "Bearer",
                "aud": _audience(retently.aud, resource),
                "iss": base_url(request),
            }
        )
    refiner = sandbox.refiner_tokens.get(presented)
    # Per-project REST keys are not OAuth tokens; only multi-project tokens introspect.
    if refiner is not None and refiner.kind == "oauth" and refiner.active(now):
        granted = [uuid for uuid in refiner.projects if uuid in sandbox.refiner]
        return reply(
            {
                "active": True,
                "scope": refiner.scope,
                "sub": refiner.sub,
                "exp": refiner.exp,
                "client_id": refiner.client_id,
                "token_type": "Bearer",
                "aud": _audience(refiner.aud, resource),
                "iss": base_url(request),
                "project_uuids": granted,
                "projects": [
                    {"uuid": uuid, "name": sandbox.refiner[uuid].name} for uuid in granted
                ],
            }
        )
    return reply({"active": False})


async def metadata(request: web.Request) -> web.Response:
    """One authorization server for both services, as both service specs point at the sandbox."""
    base = base_url(request)
    oauth_base = f"{base}/api/oauth"
    return reply(
        {
            "issuer": base,
            "authorization_endpoint": f"{oauth_base}/authorize",
            "token_endpoint": f"{oauth_base}/token",
            "registration_endpoint": f"{oauth_base}/register",
            "introspection_endpoint": f"{oauth_base}/introspect",
            "scopes_supported": [*RETENTLY_SCOPES, *REFINER_SCOPES],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint_auth_methods_supported": ["none"],
        }
    )


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/oauth/introspect", introspect),
        web.get("/.well-known/oauth-authorization-server", metadata),
        *oauth_flow.routes(),
    ]
