"""service.yaml for an imported document: the base URL from `servers` (Swagger 2.0: `schemes`,
`host` and `basePath`) behind a `${<NAME>_API_URL:-...}` variable, the credential header from
the security schemes, and the scope vocabulary from the OAuth flows. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin

from gateway.importer.operations import server_url
from gateway.importer.refs import Document
from gateway.spec.models import absolute_http_url

PLACEHOLDER_HOST: Final = "https://api.example.invalid"
"""The base URL's default when the document names no absolute server: the operator sets it."""
SCOPE: Final = re.compile(r"^[A-Za-z0-9:_.\-]+$")
HEADER: Final = re.compile(r"^[A-Za-z0-9-]+$")
MAX_TEXT: Final = 1000


@dataclass
class ServicePlan:
    """What service.yaml will say, and what the report should tell about it."""

    name: str
    base_url: str
    variable: str
    credential: dict[str, str] | None
    scheme: str | None
    scopes: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def prefix_variable(self) -> str:
        return f"{self.variable.removesuffix('_API_URL')}_CREDENTIAL_PREFIX"


def env_prefix(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", name.upper())


def plan_service(document: Document, name: str, source: str) -> ServicePlan:
    notes: list[str] = []
    plan = ServicePlan(name=name, base_url=base_url(document.root, source, notes),
                       variable=f"{env_prefix(name)}_API_URL", credential=None, scheme=None,
                       scopes={}, notes=notes)
    choose_credential(document, plan)
    plan.scopes = oauth_scopes(document, notes)
    return plan


def base_url(root: dict[str, Any], source: str, notes: list[str]) -> str:
    servers = [s for s in root.get("servers") or [] if isinstance(s, dict)]
    url = server_url(servers[0]) if servers else "/"
    if len(servers) > 1:
        notes.append(f"{len(servers)} servers: the first, {url}, is the default base URL")
    if not re.match(r"^https?://", url, re.IGNORECASE):
        if source.startswith(("http://", "https://")):
            url = urljoin(source, url)
        else:
            notes.append(f"no absolute server URL (found {url!r}): the base URL defaults to "
                         f"{PLACEHOLDER_HOST}; set the variable to the API's address")
            url = PLACEHOLDER_HOST + (url if url.startswith("/") else f"/{url}")
    url = url.rstrip("/")
    try:
        absolute_http_url(url)
        if any(c in url for c in "?#{}"):
            raise ValueError(url)
    except ValueError:
        notes.append(f"the server URL {url!r} is not usable as a base URL: it defaults to "
                     f"{PLACEHOLDER_HOST}; set the variable to the API's address")
        url = PLACEHOLDER_HOST
    return url


def choose_credential(document: Document, plan: ServicePlan) -> None:
    """The scheme one header carrying the caller's token can satisfy: of the document-wide
    requirements first, then the one most operations name, then the first declared."""
    schemes = document.mapping(document.mapping(document.root.get("components"))
                               .get("securitySchemes"))
    required = [n for r in document.root.get("security") or [] if isinstance(r, dict)
                for n in r]
    uses: dict[str, int] = {}
    for item in (document.root.get("paths") or {}).values():
        for op in document.mapping(item).values():
            for requirement in (op.get("security") or []) if isinstance(op, dict) else ():
                for name in requirement if isinstance(requirement, dict) else ():
                    uses[name] = uses.get(name, 0) + 1
    declared = list(dict.fromkeys([*required, *schemes]))
    for name in sorted(declared, key=lambda n: (n not in required, -uses.get(n, 0),
                                                declared.index(n))):
        scheme = document.mapping(schemes.get(name))
        credential, why = credential_of(scheme, plan.prefix_variable)
        if credential is not None and plan.credential is None:
            plan.credential, plan.scheme = credential, str(name)
        elif credential is None:
            plan.notes.append(f"security scheme {name!r} is not used: {why}")
        else:
            plan.notes.append(f"security scheme {name!r} is not used: the gateway forwards "
                              f"one credential, and {plan.scheme!r} was chosen")
    if plan.credential is None:
        plan.notes.append("no security scheme maps to a header: the default credential "
                          "(Authorization: Bearer <token>) is kept; edit upstream.credential")


def credential_of(scheme: dict[str, Any], prefix: str) -> tuple[dict[str, str] | None, str]:
    kind = str(scheme.get("type", "")).lower()
    if kind in ("oauth2", "openidconnect") or (
            kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer"):
        return {"header": "Authorization", "format": "Bearer {token}"}, ""
    if kind == "apikey":
        where, header = scheme.get("in"), str(scheme.get("name", ""))
        if where == "query":
            return None, "an API key in the query: the gateway never puts a credential in a URL"
        if where != "header":
            return None, f"an API key in a {where}: the gateway sends no cookies"
        if not HEADER.match(header):
            return None, f"{header!r} is not a header name the credential can use"
        return {"header": header, "format": f"${{{prefix}}}{{token}}"}, ""
    if kind == "http":
        return None, (f"HTTP {scheme.get('scheme')} authentication needs more than the "
                      "caller's token")
    return None, f"type {scheme.get('type')!r} is not a header the gateway can fill"


def oauth_scopes(document: Document, notes: list[str]) -> dict[str, str]:
    """Every scope of every OAuth flow, with its description."""
    schemes = document.mapping(document.mapping(document.root.get("components"))
                               .get("securitySchemes"))
    scopes: dict[str, str] = {}
    for scheme in schemes.values():
        flows = document.mapping(scheme).get("flows")
        for flow in flows.values() if isinstance(flows, dict) else ():
            for scope, text in (flow.get("scopes") or {}).items() if isinstance(
                    flow, dict) else ():
                if SCOPE.match(scope):
                    scopes.setdefault(scope, " ".join(str(text or "").split())[:MAX_TEXT])
                else:
                    notes.append(f"scope {scope!r} has characters a scope name cannot have: "
                                 "left out")
    return scopes


def service_yaml(plan: ServicePlan, root: dict[str, Any], scopes: dict[str, str],
                 anonymous: list[str]) -> dict[str, Any]:
    """service.yaml's values, in the order the format documents them."""
    info = root.get("info")
    info = info if isinstance(info, dict) else {}
    title = " ".join(str(info.get("title") or plan.name).split())[:200]
    description = str(info.get("description") or "").strip()[:MAX_TEXT]
    upstream: dict[str, Any] = {"base_url": f"${{{plan.variable}:-{plan.base_url}}}"}
    if plan.credential is not None:
        upstream["credential"] = plan.credential
    auth: dict[str, Any] = {"resolver": "passthrough"}
    if anonymous:
        auth["anonymous_tools"] = anonymous
    spec: dict[str, Any] = {"version": 1, "name": plan.name, "title": title}
    if description:
        spec["description"] = description
    spec.update({"endpoint": f"/{plan.name}/mcp", "upstream": upstream, "auth": auth})
    if scopes:
        spec["scopes"] = [{"name": n, "description": d} if d else {"name": n}
                          for n, d in scopes.items()]
    return spec
