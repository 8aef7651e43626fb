"""Settings: every bound and secret, read from the environment once. No gateway imports.

Constructor keyword arguments win over the environment, so tests build `Settings(...)` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _shipped_specs() -> Path:
    """The spec tree that ships with the gateway: the top-level tool_specs/ of a source checkout,
    or its copy inside the installed package (package data of `gateway.tool_specs`)."""
    package = Path(__file__).resolve().parent
    source = package.parent / "tool_specs"
    return source if (source / "retently").is_dir() else package / "tool_specs"


SHIPPED_SPECS = _shipped_specs()


class Settings(BaseSettings):
    """The gateway's configuration; `GATEWAY_`-prefixed environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", frozen=True, extra="forbid", validate_default=True,
        use_attribute_docstrings=True,  # each field's docstring is its documentation
    )

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = Field(8080, ge=0, le=65535)
    """TCP port to listen on (0 picks a free one)."""
    specs_dir: Path = SHIPPED_SPECS
    """The spec tree: a folder of service folders, or one service folder."""
    specs_watch: bool = False
    """Reload the spec tree when its files change (SIGHUP always reloads it). On for `demo`."""
    """Folder of service folders (each with a service.yaml)."""
    public_url: str | None = None
    """The base URL clients use (https://mcp.example.com): token audiences are checked against
    it, challenges and discovery documents name it, and requests for any other Host are
    answered 421. Unset: a loopback-only deployment, serving loopback Host names only."""
    allowed_hosts: tuple[str, ...] = ()
    """More Host header values (host[:port]) served besides the public URL's, e.g. an internal
    service name. Never used to build URLs."""
    loopback_only: bool = False
    """Serve without a public URL although listening on a non-loopback interface (a container
    whose port is published on the host's loopback only); only loopback Host names are served."""

    root_service: str | None = None
    """The service whose OAuth discovery documents are also served at the root well-known paths
    (/.well-known/oauth-protected-resource, /.well-known/oauth-authorization-server). Defaults
    to the only service when there is one."""

    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the MCP endpoints, besides loopback origins. Requests
    without an Origin header (non-browser clients) are always allowed."""
    allow_loopback_origins: bool = True
    """Allow http(s) origins on localhost, 127.0.0.1 and [::1], any port (local tools)."""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """Largest accepted request body; larger is answered 413."""
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    """A connection that has not sent a complete request within this many seconds of opening
    (or of its last answer) is closed: slow or idle clients cannot hold connections. A load
    balancer's idle timeout towards the gateway must be shorter."""
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    """Bound on receiving a request body once its headers arrived; slower is answered 408."""
    max_connections: int = Field(10_000, ge=16)
    """Open client connections per process; past it a new one is answered 503 and closed (the
    bound is lowered to fit the process's file descriptor limit)."""
    max_json_depth: int = Field(64, ge=4, le=10_000)
    """Deepest nesting accepted in a request body; deeper is answered as a parse error."""
    progress_keepalive_s: float = Field(10.0, gt=0, le=300)
    """A call that streams its progress (an SSE answer, for a progressToken) sends a comment
    line after this many seconds without an event, so proxies do not drop a quiet stream."""

    upstream_connect_timeout_s: float = Field(3.0, gt=0)
    """Bound on opening a connection to an upstream."""
    upstream_timeout_s: float = Field(15.0, gt=0)
    """Upper bound for a whole upstream exchange; a service may set a lower one."""
    upstream_max_response_bytes: int = Field(8_000_000, ge=1024)
    """Upstream bodies larger than this are refused instead of read into memory."""
    introspection_timeout_s: float = Field(3.0, gt=0, le=30)
    """Bound on one token introspection; past it the request is answered 503, never let in."""
    introspections_per_address_per_minute: int = Field(60, ge=1, le=1_000_000)
    """Introspections one client address may cause per minute for tokens the gateway does not
    know yet (up to this many at once, then one every 60/N seconds). Past it such a request is
    answered 429 with Retry-After and the authorization server is not asked. Tokens known to be
    valid, and their re-checks once their cache entry expires, are never counted. The address is
    the peer's, an IPv6 one counted by its /64: behind a reverse proxy every client shares the
    proxy's, so raise this there."""
    introspections_per_minute: int = Field(1200, ge=1, le=10_000_000)
    """Introspections this process may cause per minute for tokens it does not know yet, whatever
    their addresses (up to this many at once). Past it such a request is answered 503 with
    Retry-After: what a flood from many addresses costs the authorization server. Each worker
    process has its own."""
    introspection_addresses: int = Field(10_000, ge=1, le=10_000_000)
    """Client addresses whose introspection budget is remembered; past it the least recently
    seen is forgotten (and starts again with a full budget). Bounds the memory of a flood."""
    upstream_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """The upstream HTTP client: aiohttp's (about a third of httpx's CPU per call, see
    bench/README.md) or httpx's."""
    upstream_fast_lane: bool = True
    """Exchanges with upstreams (`http://` and `https://`) are sent and read on connections of
    the gateway's own (gateway/upstream/direct.py) instead of through aiohttp's client objects,
    with the same bounds and the same TLS checks; a request it would have to encode (a user in
    the URL, a header it writes itself) still goes through aiohttp's client. False: every
    exchange does. Only with `upstream_transport` aiohttp."""
    upstream_max_connections: int = Field(200, ge=1, le=100_000)
    """Connections open to one service's upstream at once, per process: each service has a
    pool of its own, so a hung upstream cannot starve another."""
    upstream_queue_wait_s: float = Field(1.0, gt=0, le=60)
    """How long an upstream request waits for a free slot (its tool's `max_in_flight`, its
    service's pool) before the call is answered "busy" without being sent."""
    upstream_retry_attempts: int = Field(3, ge=1, le=10)
    """Sends of one read at most, within its deadline, when the upstream refuses the connection
    or answers 429, 502, 503 or 504. Writes are always sent once."""
    breaker_failures: int = Field(5, ge=1, le=1000)
    """Failures in a row (refused, timed out, 5xx) after which a service's circuit opens: its
    requests are refused at once, without being sent, until a probe succeeds."""
    breaker_open_s: float = Field(10.0, gt=0, le=3600)
    """How long an opened circuit waits before letting one probe through."""
    breaker_longest_wait_s: float = Field(300.0, gt=0, le=86_400)
    """The longest Retry-After believed (a 429 or 503 opens the circuit for that long)."""
    introspection_max_connections: int = Field(50, ge=1, le=10_000)
    """Connections open to authorization servers (token introspection, discovery) at once, per
    process; a pool apart from the upstreams', so tokens are checked while an upstream hangs."""
    upstream_max_keepalive: int = Field(100, ge=0)
    """Idle connections kept for reuse (the httpx client; aiohttp's keeps up to the maximum)."""

    max_result_bytes: int = Field(100_000, ge=1024)
    """Bound on a tool result's JSON size when neither the tool nor its service sets one."""
    max_result_items: int = Field(200, ge=1)
    """Bound on the items of a list in a result when neither the tool nor its service sets one."""
    list_page_size: int = Field(100, ge=1, le=10_000)
    """Entries in one answer of tools/list, prompts/list, resources/list and
    resources/templates/list. A longer list ends each page with a `nextCursor`, which the client
    sends back for the next page."""

    pseudonym_memo_size: int = Field(100_000, ge=1, le=10_000_000)
    """Pseudonyms kept in memory per process, so recurring people are hashed once."""
    secret_key: SecretStr = SecretStr("")
    """HMAC key for write confirmations and pseudonyms. Replicas must share it; when empty a
    random one is made at startup (fine for one process, wrong for several)."""
    redis_url: SecretStr | None = None
    """redis://host:port/db: write limits and single-use confirmations shared by all replicas.
    Without it they hold per process."""
    audit_log_path: Path | None = None
    """Append-only audit file (one JSON line per write phase), each record MACed under
    `audit_key` and chained to the one before. Without it the records go to the log stream as
    `audit` events."""
    audit_key: SecretStr = SecretStr("")
    """HMAC key the audit records are chained under, kept apart from `secret_key` so whoever
    verifies the log (`mcp-gateway audit verify`) needs no key that could mint confirmations.
    Every process writing one file must share it. When empty the chain is keyed by nothing:
    anyone can check its structure, and anyone able to edit it can rewrite it; the gateway
    warns at startup when an audit file is configured without it."""

    workers: int = Field(1, ge=1, le=64)
    """Serving processes sharing the port (SO_REUSEPORT); one per core suits a dedicated host.
    They agree on pseudonyms and confirmations; write limits are shared only through Redis."""

    metrics_token: SecretStr = SecretStr("")
    """When set, /metrics answers only `Authorization: Bearer <this>` (otherwise it is open,
    like /healthz: counts and timings by service and tool, never an id or a token)."""

    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """The asyncio event loop of each serving process: `auto` is uvloop when installed (the
    `fast` extra) and the standard library's loop otherwise; `uvloop` refuses to start without
    it. The loop chosen is logged at startup (`event_loop`)."""

    native_rows: bool = True
    """De-identification, the selection of plain fields and the text copy of a result run
    compiled (gateway/native) when the install could build them; a page of rows (fields
    selected from each, or each taken whole) is made in one pass over the answer's bytes
    (gateway/spec/pages.py), and other answers whose rows a tool reads in part are decoded
    pruned to what it reads (gateway/spec/reads.py). False runs
    the pure-Python twins and decodes every answer whole, with the same results. What runs is
    logged at startup (`row_loops`: `c` or `python`)."""

    fast_lane: bool = True
    """MCP requests of the common shape (a POST of a whole JSON body to a service's endpoint
    over HTTP/1.1) are answered without aiohttp's request and response objects
    (gateway/server/lane.py): aiohttp's parser still reads every byte, and the guards and the
    pipeline are the same. Anything else is answered by aiohttp as before; false: every
    request is."""

    tracing: bool = False
    """OpenTelemetry spans (a request, its upstream exchanges) exported over OTLP as the
    OTEL_EXPORTER_OTLP_* variables say; needs the `tracing` extra. Off: no cost at all."""

    log_level: str = "info"
    """debug, info, warning or error."""
    log_json: bool | None = None
    """JSON logs; None means JSON unless stderr is a terminal."""
    access_log: bool = True
    """One log event per HTTP request (for an MCP call: service, tool, outcome, upstream
    status, durations, a digest of the caller); false: none."""


    @field_validator("public_url", mode="before")
    @classmethod
    def _absolute_origin(cls, value: object) -> str | None:
        if value is None or value == "":
            return None  # GATEWAY_PUBLIC_URL= (empty) is the same as not set
        if not isinstance(value, str):
            raise ValueError("must be a URL")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(
                c.isspace() for c in value):
            raise ValueError("must be an absolute http(s) URL without spaces")
        if parts.query or parts.fragment or parts.path.strip("/"):
            raise ValueError("must be scheme, host and port only (no path or query)")
        return value.rstrip("/")


def spec_environment() -> Mapping[str, str]:
    """The variables `${VAR}` in service.yaml may refer to (upstream URLs and the like)."""
    return os.environ
