"""Runs the `tests:` cases of a spec tree's tools through the real app, offline: each case gets a
gateway of its own, served on loopback, whose upstream (and token introspection) is an
in-memory wire answering from the case. Off the request path: `mcp-gateway test` and the test
suite use it; what differed is decided by the pure gateway/spec/case_checks.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web

from gateway.auth.principal import passthrough_principal
from gateway.errors import WireError
from gateway.server.app import create_app
from gateway.settings import Settings
from gateway.spec.case_checks import Outcome, differences, preview_token
from gateway.spec.cases import ToolTestCase, UpstreamFixture
from gateway.spec.compiled import CompiledService, CompiledTool, Registry
from gateway.upstream.mock_wire import Exchange, MockWire
from gateway.upstream.wire import Answer

CASE_TIME: Final = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
"""Cases run at this moment, so `{now...}` templates give the same values every day."""
TOKENS: Final = ("case_tester_token_0123456789abcdef", "CaseTester0123456789abcdef0123456789",
                 "casetester_0123456789abcdef",
                 "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyX2Nhc2UifQ.Y2FzZXRlc3Rlcg")
"""Bearer tokens of the usual shapes (opaque, JWT). The caller's is the first of these, alone or
after the literal start of `auth.token_pattern` (`acme_` of `^acme_[a-z0-9]{16,}$`), that the
pattern accepts."""
LITERAL_START: Final = re.compile(r"^(?:\^|\\A)((?:[^\\.^$*+?{}\[\]|()]|\\[-_./:@])*)")
"""The characters a token pattern starts with that stand for themselves."""
CALL_TIMEOUT_S: Final = 30.0
"""A case whose call takes longer fails (the upstream answers at once, so it hangs)."""
MCP_HEADERS: Final = {"Content-Type": "application/json",
                      "Accept": "application/json, text/event-stream"}


@dataclass(frozen=True)
class FoundCase:
    """One case of one tool, and where it is written."""

    service: CompiledService
    tool: CompiledTool
    case: ToolTestCase
    file: str
    line: int


@dataclass(frozen=True)
class CaseResult:
    found: FoundCase
    differences: tuple[str, ...]
    """What differed, one sentence each; empty when the case passed."""

    @property
    def passed(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        found = self.found
        verdict = "; ".join(self.differences) or "passed"
        return f"{found.file}:{found.line}: {found.tool.name}: {found.case.name}: {verdict}"


def selected_tools(registry: Registry, *, services: Collection[str] = (),
                   tools: Collection[str] = ()) -> list[tuple[CompiledService, CompiledTool]]:
    """The tools of the tree, in order, kept to the named services and tools (when named)."""
    return [(service, tool) for service in registry.services
            if not services or service.name in services
            for tool in service.tools.values() if not tools or tool.name in tools]


def find_cases(registry: Registry, *, services: Collection[str] = (),
               tools: Collection[str] = ()) -> list[FoundCase]:
    """Every case of the selected tools (see selected_tools), with its file and line."""
    return [FoundCase(service, tool, case, *_where(tool, index))
            for service, tool in selected_tools(registry, services=services, tools=tools)
            for index, case in enumerate(tool.spec.tests)]


def _where(tool: CompiledTool, index: int) -> tuple[str, int]:
    origin = tool.origin
    if origin is None:
        return f"({tool.service})", 0
    return origin.file, origin.cases[index] if index < len(origin.cases) else origin.line


def case_settings() -> Settings:
    """Every setting at its default, whatever the environment says: no deployment's Redis,
    audit file, tracing exporter or host rule reaches a case (init values beat the
    environment, so each field is given)."""
    return Settings(**{name: info.get_default(call_default_factory=True)
                       for name, info in Settings.model_fields.items()})


async def run_cases(registry: Registry, cases: Collection[FoundCase],
                    settings: Settings | None = None) -> list[CaseResult]:
    """Run cases one after another (each has its own gateway)."""
    settings = settings or case_settings()
    return [await run_case(registry, found, settings) for found in cases]


async def run_case(registry: Registry, found: FoundCase,
                   settings: Settings | None = None) -> CaseResult:
    """Run one case through a gateway of its own serving `registry`."""
    service, tool, case = found.service, found.tool, found.case
    token, refused = _caller(service, case)
    if token is None:
        return CaseResult(found, (refused,))
    upstream = CaseUpstream(service, case)
    app = create_app(settings or case_settings(), registry, clock=lambda: CASE_TIME,
                     wire=MockWire(upstream))
    async with _served(app) as (base, session):
        upstream.resource = base + service.spec.endpoint

        async def call(arguments: dict[str, Any]) -> tuple[int, Any]:
            return await _call(session, upstream.resource, token, tool.name, arguments)

        try:
            outcome = await asyncio.wait_for(_outcome(case, call, upstream), CALL_TIMEOUT_S)
        except TimeoutError:
            return CaseResult(found, (f"no answer within {CALL_TIMEOUT_S:.0f}s",))
    if isinstance(outcome, str):
        return CaseResult(found, (outcome, *upstream.strays))
    found_differences = differences(case, writes=tool.is_write,
                                    base_url=service.spec.upstream.base_url, outcome=outcome)
    return CaseResult(found, (*found_differences, *upstream.strays))


def _caller(service: CompiledService, case: ToolTestCase) -> tuple[str | None, str]:
    """The token the case calls with, or None and why the case cannot be run."""
    pattern = service.spec.auth.token_pattern
    tried = caller_tokens(pattern)
    token = next((t for t in tried if pattern is None or re.fullmatch(pattern, t)), None)
    if token is None:
        return None, (f"none of the test tokens matches auth.token_pattern {pattern!r}: "
                      f"{', '.join(tried)}")
    wanted = case.caller_scopes
    if (wanted is not None and service.spec.auth.resolver == "passthrough"
            and set(wanted) != passthrough_principal(service, token).scopes):
        return None, ("as_scopes: the service does not introspect its tokens (auth.resolver: "
                      "passthrough), so a caller always holds its default scopes")
    return token, ""


def caller_tokens(pattern: str | None) -> list[str]:
    """The tokens a case may call with, in the order tried (see TOKENS)."""
    start = LITERAL_START.match(pattern or "")
    if pattern is None or start is None or not start[1]:
        return list(TOKENS)
    literal = re.sub(r"\\(.)", r"\1", start[1])
    if pattern[start.end():start.end() + 1] in ("*", "+", "?", "{"):
        literal = literal[:-1]  # its last character is repeated or optional
    return [*TOKENS, *(literal + token for token in TOKENS)]


async def _outcome(case: ToolTestCase, call: Callable[[dict[str, Any]], Awaitable[
        tuple[int, Any]]], upstream: CaseUpstream) -> Outcome | str:
    """Make the case's call (both, for `confirm: true`); a sentence when the preview fails."""
    status, body = await call(case.arguments)
    if not case.confirm:
        return Outcome(status, body, upstream.sent)
    token, problem = preview_token(body)
    if token is None:
        return problem
    sent_by_preview = len(upstream.sent)
    final_status, final = await call({**case.arguments, "confirmation_token": token})
    return Outcome(final_status, final, upstream.sent, body, sent_by_preview)


@asynccontextmanager
async def _served(app: web.Application) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """The app served on a loopback port of its own: its base URL, and a client session."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{port}", session
    finally:
        await runner.cleanup()


async def _call(session: aiohttp.ClientSession, url: str, token: str, tool: str,
                arguments: dict[str, Any]) -> tuple[int, Any]:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}}
    async with session.post(url, data=orjson.dumps(message),
                            headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}) as answer:
        raw = await answer.read()
        try:
            return answer.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return answer.status, raw.decode(errors="replace")


@dataclass
class CaseUpstream:
    """The MockWire handler of one case: introspection answered with the case's caller, each
    request to the upstream's host with the case's next answer (the last one once they run
    out), any other request refused and reported."""

    service: CompiledService
    case: ToolTestCase
    resource: str = ""
    """This endpoint's own URL, once served: what a `{resource}` audience stands for."""
    sent: list[Exchange] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)

    def __call__(self, exchange: Exchange) -> Answer:
        introspection = self.service.spec.auth.introspection_url
        if introspection and exchange.method == "POST" and _same(exchange.url, introspection):
            return _json(200, self.claims())
        if urlsplit(exchange.url).hostname != urlsplit(
                self.service.spec.upstream.base_url).hostname:
            self.strays.append(f"a request to a host the case does not answer: "
                               f"{exchange.method} {exchange.url}")
            raise WireError("connect", "not the upstream of the case")
        self.sent.append(exchange)
        given = self.case.upstream
        answers = given if isinstance(given, list) else [given or UpstreamFixture()]
        answer = answers[min(len(self.sent), len(answers)) - 1]
        return _json(answer.status, answer.body, answer.headers)

    def claims(self) -> dict[str, Any]:
        """What introspection says of the caller: active, with the case's scopes (every scope
        of the service by default), for this server, plus the case's claims."""
        spec = self.service.spec
        wanted = self.case.caller_scopes
        scopes = wanted if wanted is not None else [s.name for s in spec.scopes]
        names = spec.auth.claims
        audiences = [spec.auth.audience] if isinstance(spec.auth.audience, str) else (
            spec.auth.audience or [])
        audience = {"aud": [a.replace("{resource}", self.resource) for a in audiences]
                    } if audiences else {}
        # The subject is set last: a service whose account claim is the subject's (`sub`)
        # gets `user_case` for both.
        return {"active": True, names.scopes: " ".join(scopes), names.account: "acc_case",
                names.subject: "user_case", "exp": 4102444800, **audience, **self.case.claims}


def _same(url: str, other: str) -> bool:
    return url.split("?")[0].rstrip("/") == other.split("?")[0].rstrip("/")


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, {"content-type": "application/json", **(headers or {})},
                  orjson.dumps(body))
