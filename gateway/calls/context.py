"""The per-call context handed down a call's pipeline: who calls, which service, which trace,
and where progress goes. Pure.

Built once per request from the verified principal, so no step below the endpoint needs the
whole principal or the whole service, and no value a model sends can stand in for one of these.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import field
from datetime import datetime
from typing import Any, Final

from gateway.auth.principal import Principal
from gateway.records import record
from gateway.spec.compiled import CompiledService, CompiledTool
from gateway.spec.models import UpstreamSpec, WritePolicy
from gateway.spec.templates import RenderContext

Progress = Callable[[int, int | None, str], Awaitable[None]]
"""Where a call reports how far it got: (done so far, total when known, a short message). It
may raise StreamClosed when nobody listens any more, which ends the call."""

_TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def valid_traceparent(value: str | None) -> str | None:
    """A W3C trace context worth carrying upstream, or None: malformed, oversized, version ff
    or all-zero ids are dropped rather than forwarded (the header is the caller's text)."""
    if value is None or len(value) != 55:
        return None
    found = _TRACEPARENT.fullmatch(value)
    if found is None or value.startswith("ff") or set(found[1]) == {"0"} or set(
            found[2]) == {"0"}:
        return None
    return value


@record
class Caller:
    """One verified caller of one service, for the length of one request."""

    service: str
    upstream: UpstreamSpec
    """Where the service's requests go and how the caller's credential is sent there."""
    writes: WritePolicy
    token: str | None
    subject: str | None
    account: str | None
    scopes: frozenset[str]
    fields: Mapping[str, Any] = field(default_factory=dict)
    """What templates see as {principal.<field>}: account, subject and the mapped claims."""
    traceparent: str | None = None
    """The W3C trace context to carry upstream."""
    tool: str = ""
    """The tool (or resource) being called, whose share of upstream slots its requests take."""
    tool_cap: int = 50
    """That tool's upstream requests open at once, at most (its `max_in_flight`)."""
    progress: Progress | None = None
    """Where the call reports its progress, when the client asked for it (a progressToken)."""

    @classmethod
    def of(cls, service: CompiledService, principal: Principal,
           traceparent: str | None = None) -> Caller:
        return cls(service.name, service.spec.upstream, service.spec.writes, principal.token,
                   principal.subject, principal.account, principal.scopes,
                   {**principal.extra, "account": principal.account,
                    "subject": principal.subject}, valid_traceparent(traceparent))

    def calling(self, tool: CompiledTool) -> Caller:
        """This caller, calling `tool`. (Built field by field: `dataclasses.replace` looks the
        fields up again on every call, about 5 us a request.)"""
        return Caller(service=self.service, upstream=self.upstream, writes=self.writes,
                      token=self.token, subject=self.subject, account=self.account,
                      scopes=self.scopes, fields=self.fields, traceparent=self.traceparent,
                      tool=tool.name, tool_cap=tool.max_in_flight, progress=self.progress)

    @property
    def anonymous(self) -> bool:
        return self.token is None

    @property
    def tenant(self) -> str:
        """Whose budget a write spends: the account, else the user."""
        return self.account or self.subject or "anonymous"

    @property
    def credential_key(self) -> str:
        """Whom an upstream's rate limit (429) most likely counts: the account when known, else
        the token (by digest, so it is not kept in memory as itself)."""
        if self.account:
            return f"account:{self.account}"
        if self.token is None:
            return "anonymous"
        return "token:" + hashlib.sha256(self.token.encode()).hexdigest()[:32]

    def render_context(self, arguments: Mapping[str, Any], now: datetime) -> RenderContext:
        return RenderContext(arguments, self.fields, now)
