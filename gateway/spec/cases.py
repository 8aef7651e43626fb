"""Spec test cases, part of the spec format: arguments -> expected upstream request ->
upstream fixture -> expected tool result. Pure models; `mcp-gateway test` and the suite run them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from gateway.spec.models import HttpMethod, SpecModel


class UpstreamFixture(SpecModel):
    status: int = Field(200, ge=100, le=599)
    body: Any = None
    headers: dict[str, str] = {}


class ExpectedRequest(SpecModel):
    method: HttpMethod | None = None
    path: str | None = None
    query: dict[str, Any] | None = None
    """Exact query parameters (values as strings; lists for repeated keys)."""
    body: Any = None


class ExpectedResult(SpecModel):
    is_error: bool = Field(False, alias="isError")
    structured: Any = None
    """A subset the structured result must contain (objects compared key by key)."""
    text_contains: list[str] = []
    text_excludes: list[str] = []


class ToolTestCase(SpecModel):
    """arguments -> expected upstream request -> upstream response -> expected tool result."""

    name: str
    arguments: dict[str, Any] = {}
    as_scopes: list[str] | None = None
    """The caller holds exactly these scopes for this case (default: every scope of the
    service). Its token is introspected with them, so the service needs the introspection
    resolver unless they are its `default_scopes`."""
    scopes: list[str] | None = None
    """The older name of `as_scopes`, with the same meaning; a case gives one or the other."""
    claims: dict[str, Any] = {}
    """More claims of the caller's token, as its introspection would give them."""
    confirm: bool = False
    """For a write tool: call once for the preview, then again with its confirmation token."""
    expect_request: ExpectedRequest | None = None
    """The last upstream request of the call (the write itself, for a confirmed write)."""
    expect_calls: int | None = None
    """How many upstream requests the call makes (token introspection not counted)."""
    upstream: UpstreamFixture | list[UpstreamFixture] | None = None
    """The upstream's answer, or its answers in order (pages, preview read then write)."""
    expect: ExpectedResult = ExpectedResult()
    protocol_error: int | None = None
    """Expected JSON-RPC error code when the call must be refused before any upstream request."""
    expect_absent: list[str] = []
    """Strings that must appear nowhere in what the caller gets back (any key or value of the
    result or error, the preview's too): an email, a name, for a caller without the PII scope."""

    @model_validator(mode="after")
    def _one_scope_key(self) -> ToolTestCase:
        if self.as_scopes is not None and self.scopes is not None:
            raise ValueError("`as_scopes` and `scopes` are the same key: give one of them")
        return self

    @property
    def caller_scopes(self) -> list[str] | None:
        """The scopes the caller holds, None for every scope of the service."""
        return self.as_scopes if self.as_scopes is not None else self.scopes
