"""The spec format, version 1: frozen pydantic models of service.yaml and the tool files. Pure.

These models are the product's public interface: `mcp-gateway schema` publishes them as JSON
Schema, and docs/spec-format.md explains every key. Unknown keys are refused everywhere.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$"
JsonType = Literal["string", "integer", "number", "boolean", "array", "object", "null"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


ENV_REFERENCE: Final = {"type": "string", "pattern": r"^\$\{[^}]+\}$"}
"""What a value of service.yaml may also be in the published schema: a ${VAR} read at load."""


def absolute_http_url(value: str) -> str:
    """An absolute http(s) URL with a host, a valid port and no spaces, refused at load rather
    than failing each call (a ${VAR} left as "http://", or with a space typed in it)."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute http(s) URL with a host")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"{value!r} contains spaces or control characters")
    return value


HttpUrl = Annotated[str, AfterValidator(absolute_http_url)]
"""An absolute http(s) URL (see absolute_http_url)."""


class SpecModel(BaseModel):
    """Base of every spec model: frozen, unknown keys refused, keys as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Credential(SpecModel):
    """Where the caller's own token goes on the upstream request."""

    header: str = Field("Authorization", pattern=r"^[A-Za-z0-9-]+$")
    format: str = "Bearer {token}"
    """The header value; `{token}` stands for the caller's bearer token."""

    @field_validator("format")
    @classmethod
    def _has_token(cls, value: str) -> str:
        if value.count("{token}") != 1:
            raise ValueError("format must contain {token} exactly once")
        return value


class QueryStyle(SpecModel):
    """How lists and booleans are written into an upstream query string."""

    arrays: Literal["repeat", "brackets", "comma"] = "repeat"
    """repeat: a=1&a=2; brackets: a[]=1&a[]=2; comma: a=1,2."""
    booleans: Literal["true_false", "one_zero"] = "true_false"


class UpstreamSpec(SpecModel):
    """The REST API behind the service."""

    base_url: str
    """Scheme, host, port and base path; `${VAR}` and `${VAR:-default}` are interpolated."""
    credential: Credential = Credential()
    timeout_s: float | None = Field(None, gt=0, le=300)
    headers: dict[str, str] = {}
    """Static headers sent on every upstream request (never the caller's Authorization)."""
    query_style: QueryStyle = QueryStyle()
    error_message: list[str] = ["message", "error", "error_description", "detail"]
    """Keys tried, in order, to find the human-readable message in an upstream error body."""
    max_in_flight_per_tool: int = Field(50, ge=1, le=100_000)
    """Upstream requests one tool may have open at once in one process (a tool may set its own
    `max_in_flight`), so one hung endpoint holds a bounded share of the service's connections
    (GATEWAY_UPSTREAM_MAX_CONNECTIONS each)."""

    @field_validator("base_url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        if "?" in value or "#" in value:
            raise ValueError("base_url must be an http(s) URL without query or fragment")
        return absolute_http_url(value).rstrip("/")


class ClaimNames(SpecModel):
    """Which introspection fields carry the principal's parts."""

    scopes: str = "scope"
    subject: str = "sub"
    account: str = "account_id"
    extra: dict[str, str] = {}
    """More principal fields: name -> claim, e.g. {projects: project_uuids}; templates and checks
    refer to them as {principal.<name>}."""


class RefusedToken(SpecModel):
    """A recognisable kind of token the service never accepts, and what its holder is told."""

    pattern: str
    """A regular expression the whole token matches (a REST API key's shape, say)."""
    message: str = Field(min_length=1, max_length=300)
    """Why it is refused and what to use instead; sent as the 401's error_description."""


class AuthSpec(SpecModel):
    """How an inbound bearer token becomes a principal."""

    required: bool = True
    """false: every method works without a token (a public or test service); a token that is
    sent is still checked."""
    resolver: Literal["passthrough", "introspection"] = "passthrough"
    """passthrough: any well-formed token is forwarded and the upstream decides, with
    `default_scopes`; introspection: RFC 7662 at `introspection_url` gives scopes, subject,
    account and expiry, cached by a hash of the token until it expires."""
    introspection_url: HttpUrl | None = None
    claims: ClaimNames = ClaimNames()
    audience: str | list[str] | None = None
    """When set, an introspected `aud` must contain one of these; `{resource}` stands for this
    endpoint's own canonical URL (RFC 8707: a token must be issued for this server)."""
    require_audience: bool = True
    """With `audience` set, refuse an introspected token whose answer names no `aud` at all (a
    token issued for no particular resource could have been meant for any). false: accept such
    tokens, for authorization servers that never say."""
    cache_ttl_s: int = Field(300, ge=0, le=86_400)
    """Upper bound on how long an introspection result is reused (never past the expiry)."""
    token_pattern: str | None = None
    """A regular expression every token must match before anything else happens."""
    refuse_patterns: list[RefusedToken] = []
    """Tokens of a wrong kind that can be told by their shape (an upstream REST key sent where
    an OAuth token is needed): refused with their own message before anything is asked."""
    anonymous_tools: list[str] = []
    """Tools callable without a token (e.g. a liveness probe)."""
    authorization_servers: list[HttpUrl] = []
    """Published in the protected-resource metadata (RFC 9728)."""
    authorization_server_metadata: HttpUrl | None = None
    """URL of the authorization server's RFC 8414 document, relayed by the gateway at
    /.well-known/oauth-authorization-server for clients that look for it on this host."""
    default_scopes: list[str] = []
    """Scopes granted to a passthrough token."""


class Budget(SpecModel):
    """Bounds on what a result may contain; trimming keeps the JSON valid and says what was cut."""

    max_items: int | None = Field(None, ge=1, le=10_000)
    max_bytes: int | None = Field(None, ge=256, le=10_000_000)


class ScopeSpec(SpecModel):
    name: str = Field(pattern=r"^[A-Za-z0-9:_.\-]+$")
    description: str = ""


class PiiPolicy(SpecModel):
    """Personal data: what is de-identified for callers without the PII scope."""

    scope: str = "pii:read"
    """Callers with this scope get the data as is."""
    write_scope: str | None = "pii:write"
    """Needed to send arguments marked `pii: write`."""
    fields: list[str] = []
    """Keys, anywhere in a result, whose values become stable pseudonyms."""
    drop: list[str] = []
    """Keys removed from results (job titles, locations, free-form attribute values)."""
    scrub_text: bool = True
    """Also pseudonymise email addresses inside any other text."""


class WritePolicy(SpecModel):
    """Two-phase write safety for the service's write tools."""

    confirm_ttl_s: int = Field(300, ge=10, le=3600)
    """How long a preview's confirmation token stays valid."""
    per_account_per_minute: Annotated[int, Field(ge=1, le=100_000), WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 100_000}, ENV_REFERENCE]})
    ] = 30
    """Write executions allowed per account per minute (token bucket)."""
    previews_per_account_per_minute: Annotated[int, Field(ge=1, le=1_000_000), WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1_000_000}, ENV_REFERENCE]})
    ] = 120
    """Previews allowed per account per minute: they send nothing, but each reads upstream
    state and issues a token, so they are bounded too (more loosely than executions)."""
    require_human: list[str] = []
    """Write tools whose every change a person confirms in the client's own dialog
    (elicitation): refused, with the reason, to clients that cannot show one."""


ENDPOINT_PATTERN: Final = r"^(/[A-Za-z0-9_.\-]+)+$"
SELECTOR_PATTERN: Final = (r"^(kind:(read|write|meta|resource|prompt)|tag:[A-Za-z0-9_.:\-]+"
                           r"|[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63})$")
Selector = Annotated[str, Field(pattern=SELECTOR_PATTERN)]
"""A name of a tool, resource or prompt, `kind:<kind>` or `tag:<tag>`."""


class EndpointSpec(SpecModel):
    """A virtual server: one more endpoint serving a named subset of the service's tools,
    resources and prompts, with the service's upstream, auth and PII policy."""

    path: str = Field(pattern=ENDPOINT_PATTERN)
    title: str | None = None
    instructions: str | None = None
    """Sent to clients instead of the service's."""
    include: list[Selector] = []
    """What it serves: names of tools, resources or prompts, `kind:read` (read tools and
    resources), `kind:write`, `kind:meta`, `kind:resource`, `kind:prompt`, or `tag:<tag>` (tools
    with that tag). Empty: everything."""
    exclude: list[Selector] = []
    """Taken out of what `include` selected; the same selectors."""


class ServiceSpec(SpecModel):
    """service.yaml."""

    version: Literal[1] = 1
    enabled: Annotated[bool, WithJsonSchema({"anyOf": [{"type": "boolean"}, ENV_REFERENCE]})
                       ] = True
    """false: the folder is checked but not served, e.g. `enabled: ${WITH_FIXTURES:-false}`."""
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")
    title: str
    description: str = ""
    instructions: str | None = None
    """Sent to clients in initialize / server/discover; guidance for the model."""
    endpoint: str = Field(pattern=ENDPOINT_PATTERN)
    """Path of the MCP endpoint, e.g. /retently/mcp."""
    endpoints: list[EndpointSpec] = []
    """Virtual servers: more endpoints, each serving a subset (e.g. the read tools only)."""
    upstream: UpstreamSpec
    auth: AuthSpec = AuthSpec()
    scopes: list[ScopeSpec] = []
    budget: Budget = Budget()
    pii: PiiPolicy | None = None
    writes: WritePolicy = WritePolicy()
    fragments: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")], str] = {}
    """Shared JMESPath pieces, used as `$name` in any expression of the service's tools, e.g.
    `item: '(data.responses[0] || data)'` then `select: '$item.{id: id}'`."""


