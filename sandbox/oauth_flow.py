"""The authorization server's interactive half, for demos: dynamic client registration
(RFC 7591), the authorization code grant with PKCE S256, and refresh tokens.

There is no login page: `/authorize` approves at once as a demo identity, chosen by
`login_hint=<demo token>` or else by the requested scopes (Retently admin, or the full Refiner
token). Access tokens it issues join the app's token tables, so the REST endpoints and
introspection accept them like the fixed demo tokens.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from aiohttp import web
from yarl import URL

from sandbox.errors import UpstreamError
from sandbox.http import SANDBOX, json_object, reply
from sandbox.store import OAuthGrant, RefinerToken, RetentlyToken, Sandbox

ACCESS_TOKEN_SECONDS = 21600
"""Six hours, the lifetime Retently's token endpoint reports (upstream-retently.md §4.2)."""
CODE_SECONDS = 600
DEFAULT_RETENTLY = "rtly_mcp_pat_demoadmin_s3cr3t"
DEFAULT_REFINER = "refiner_demo_full"


def _oauth_error(status: int, error: str, description: str) -> UpstreamError:
    return UpstreamError(status, {"error": error, "error_description": description})


async def register(request: web.Request) -> web.Response:
    """RFC 7591: any client may register public redirect URIs; no secret is issued."""
    sandbox = request.app[SANDBOX]
    body = await json_object(
        request, lambda: _oauth_error(400, "invalid_client_metadata", "Body must be JSON")
    )
    uris = body.get("redirect_uris")
    if not isinstance(uris, list) or not uris or not all(_is_redirect(uri) for uri in uris):
        raise _oauth_error(400, "invalid_redirect_uri", "redirect_uris must be http(s) URLs")
    client_id = f"client_{secrets.token_hex(8)}"
    client = {
        "client_id": client_id,
        "client_id_issued_at": int(sandbox.now().timestamp()),
        "client_name": str(body.get("client_name") or "MCP client"),
        "redirect_uris": uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }
    sandbox.oauth.clients[client_id] = client
    return reply(client, 201)


def _is_redirect(uri: Any) -> bool:
    return isinstance(uri, str) and URL(uri).scheme in ("http", "https") and bool(URL(uri).host)


def _template(sandbox: Sandbox, hint: str | None, scopes: list[str], resource: str) -> str:
    if hint and (hint in sandbox.retently_tokens or hint in sandbox.refiner_tokens):
        return hint
    refiner = any(s.startswith("mcp:") for s in scopes) or "/refiner" in resource
    return DEFAULT_REFINER if refiner else DEFAULT_RETENTLY


async def authorize(request: web.Request) -> web.StreamResponse:
    """Approve at once and redirect back with a code (or with an OAuth error)."""
    sandbox = request.app[SANDBOX]
    query = request.query
    client = sandbox.oauth.clients.get(query.get("client_id", ""))
    redirect_uri = query.get("redirect_uri", "")
    if client is None or redirect_uri not in client["redirect_uris"]:
        # Never redirect to an unverified URI (RFC 6749 §4.1.2.1).
        raise _oauth_error(400, "invalid_request", "Unknown client_id or redirect_uri")
    back = URL(redirect_uri)
    state = {"state": query["state"]} if "state" in query else {}
    if query.get("response_type") != "code":
        raise web.HTTPFound(str(back.update_query(error="unsupported_response_type", **state)))
    challenge = query.get("code_challenge", "")
    if not challenge or query.get("code_challenge_method") != "S256":
        raise web.HTTPFound(str(back.update_query(error="invalid_request", **state)))
    requested = query.get("scope", "").split()
    resource = query.get("resource") or None
    template = _template(sandbox, query.get("login_hint"), requested, resource or "")
    source = sandbox.retently_tokens.get(template) or sandbox.refiner_tokens[template]
    if not source.active(sandbox.now()):
        # An expired or revoked identity must not come back to life through a login.
        raise web.HTTPFound(str(back.update_query(error="access_denied", **state)))
    ceiling = source.scope.split()
    granted = [s for s in requested if s in ceiling] if requested else ceiling
    if not granted:
        raise web.HTTPFound(str(back.update_query(error="invalid_scope", **state)))
    code = secrets.token_urlsafe(24)
    sandbox.oauth.codes[code] = OAuthGrant(
        client_id=client["client_id"],
        template=template,
        scope=" ".join(granted),
        resource=resource,
        redirect_uri=redirect_uri,
        challenge=challenge,
        expires=sandbox.now().timestamp() + CODE_SECONDS,
    )
    raise web.HTTPFound(str(back.update_query(code=code, **state)))


def _issue(sandbox: Sandbox, grant: OAuthGrant) -> dict[str, Any]:
    """Mint an access token shaped like its template, plus a fresh single-use refresh token."""
    expires = int(sandbox.now().timestamp()) + ACCESS_TOKEN_SECONDS
    retently = sandbox.retently_tokens.get(grant.template)
    if retently is not None:
        # Opaque, unlike the `rtly_mcp_pat_` shape, so a gateway can tell OAuth tokens from PATs.
        access = f"oat_{secrets.token_urlsafe(32)}"
        sandbox.retently_tokens[access] = RetentlyToken(
            token=access,
            description=f"OAuth access token issued to {grant.client_id}",
            account_id=retently.account_id,
            sub=retently.sub,
            user=retently.user,
            scope=grant.scope,
            permission=retently.permission,
            exp=expires,
            client_id=grant.client_id,
            revoked=False,
            aud=(grant.resource,) if grant.resource else retently.aud,
        )
    else:
        refiner = sandbox.refiner_tokens[grant.template]
        access = f"oat_{secrets.token_urlsafe(32)}"
        sandbox.refiner_tokens[access] = RefinerToken(
            token=access,
            description=f"OAuth access token issued to {grant.client_id}",
            kind="oauth",
            projects=refiner.projects,
            scope=grant.scope,
            sub=refiner.sub,
            client_id=grant.client_id,
            exp=expires,
            aud=(grant.resource,) if grant.resource else refiner.aud,
        )
    refresh = secrets.token_urlsafe(32)
    sandbox.oauth.refresh_tokens[refresh] = grant
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "refresh_token": refresh,
        "scope": grant.scope,
    }


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode()).digest()
    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return secrets.compare_digest(expected, challenge)


async def token(request: web.Request) -> web.Response:
    """`authorization_code` (with `code_verifier`) and `refresh_token` grants; codes and
    refresh tokens are single use."""
    sandbox = request.app[SANDBOX]
    form = {key: str(value) for key, value in (await request.post()).items()}
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        grant = sandbox.oauth.codes.pop(form.get("code", ""), None)
        if (
            grant is None
            or grant.expires < sandbox.now().timestamp()
            or grant.client_id != form.get("client_id")
            or grant.redirect_uri != form.get("redirect_uri")
            or not _pkce_matches(form.get("code_verifier", ""), grant.challenge)
        ):
            raise _oauth_error(400, "invalid_grant", "The code is unknown, used, or mismatched")
    elif grant_type == "refresh_token":
        grant = sandbox.oauth.refresh_tokens.pop(form.get("refresh_token", ""), None)
        if grant is None or grant.client_id != form.get("client_id"):
            raise _oauth_error(400, "invalid_grant", "The refresh token is unknown or used")
    else:
        raise _oauth_error(400, "unsupported_grant_type", "Use authorization_code or refresh_token")
    return reply(_issue(sandbox, grant), headers={"Cache-Control": "no-store"})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/oauth/register", register),
        web.get("/api/oauth/authorize", authorize),
        web.post("/api/oauth/token", token),
    ]
