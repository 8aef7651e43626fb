"""POST <service endpoint>: one JSON-RPC message in, one answer out.

Each request passes the guards in the order the transport spec implies: Origin (403), HTTP
method (405), Content-Type and Content-Encoding (415), Accept (406), size (413), body time (408),
JSON (400); then it is parsed and
routed, its credential checked (401) before any routing refusal is answered, and the method
table runs it. One log event per request.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Final

import orjson
import structlog
from aiohttp import web

from gateway.auth.bearer import bearer_token, challenge
from gateway.auth.principal import ANONYMOUS, Principal
from gateway.calls.context import Caller
from gateway.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    AuthError,
    AuthUnavailable,
    InsufficientScope,
    IntrospectionThrottled,
    ProtocolError,
    StreamClosed,
)
from gateway.logs import summarise_request
from gateway.protocol.envelope import Envelope, Era, decode, parse
from gateway.protocol.methods import METHODS, MethodCall, dispatch, needs_credential
from gateway.protocol.paging import LIST_METHODS
from gateway.protocol.replies import (
    encode_reply,
    error_body,
    error_reply,
    http_status,
    internal_error,
    reply_parts,
)
from gateway.server.discovery import metadata_url
from gateway.server.incoming import Incoming, Reply
from gateway.server.origin import origin_allowed
from gateway.server.state import CALLS, LISTS, RESOLVER, SETTINGS, SHAPED, SPECS
from gateway.server.streaming import (
    ProgressStream,
    ProgressToken,
    media_types,
    named,
    progress_token,
)
from gateway.spec.compiled import CompiledService
from gateway.telemetry.metrics import REQUEST_SECONDS, REQUESTS, UPSTREAM_TIME, child
from gateway.telemetry.tracing import request_span

log = structlog.get_logger("gateway")
JSON: Final = "application/json"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON,
                        headers=headers)


def _refused(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json(error_reply(INVALID_REQUEST, message), status, headers)


def _closing(response: web.Response) -> web.Response:
    """An answer after which the connection closes: the rest of the body is never parsed (what
    is still in flight is read and dropped for a few seconds, so that the client sees the
    answer rather than a reset)."""
    response.force_close()
    return response


async def _given_up(request: web.Request) -> web.StreamResponse:
    """408 for a body that stopped arriving, and the connection closed as soon as the answer is
    written: the client sends nothing more, so reading on for the rest (aiohttp lingers up to
    10 s after an answer that leaves a body unread) would only hold the connection."""
    response = _closing(_refused(408, "The request body did not arrive in time"))
    await named(response).prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


async def mcp_endpoint(request: web.Request) -> web.StreamResponse:
    """The MCP endpoint of whichever service the path names, for a request aiohttp read."""
    incoming = Incoming.of(request)
    service = _admitted(incoming)
    if not isinstance(service, CompiledService):  # (not web.Response: an ABC, slower to ask)
        return service
    try:
        if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
            raw = await request.read()
        else:
            async with asyncio.timeout(request.app[SETTINGS].body_timeout_s):
                raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _refused(413, "Request body too large")
    except TimeoutError:
        return await _given_up(request)
    answer = await _served(incoming, service, raw)
    return answer.response() if isinstance(answer, Reply) else answer


async def answer_on_lane(incoming: Incoming, body: bytes) -> web.StreamResponse | Reply:
    """The answer to a request the fast lane read whole (server/lane.py), by the same guards
    and pipeline as mcp_endpoint. Never streamed: the lane leaves requests that may ask for a
    stream to aiohttp, and one that slips past answers as plain JSON (progress is optional)."""
    service = _admitted(incoming)
    if not isinstance(service, CompiledService):
        return service
    return await _served(incoming, service, body)


def _admitted(incoming: Incoming) -> CompiledService | web.Response:
    """The service the path names, or the answer to a request refused on its line and headers
    alone (404, then the guards in the order the transport spec implies)."""
    service = incoming.app[SPECS].registry.by_endpoint.get(incoming.path)
    if service is None:
        return web.json_response({"error": "not_found", "path": incoming.path}, status=404)
    settings = incoming.app[SETTINGS]
    headers = incoming.headers
    if not origin_allowed(headers.get("Origin"), settings):
        return _refused(403, "Origin not allowed")
    if incoming.method != "POST":
        return _refused(405, "Method not allowed: use POST", {"Allow": "POST"})
    if incoming.content_type != JSON:
        return _refused(415, "Content-Type must be application/json")
    if headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        return _closing(_refused(415, "Content-Encoding is not accepted: send the body as is"))
    if not _accepts_json(headers.get("Accept")):
        return _refused(406, "Accept must include application/json and text/event-stream")
    if (incoming.content_length or 0) > settings.max_body_bytes:
        return _refused(413, "Request body too large")
    return service


async def _served(incoming: Incoming, service: CompiledService, raw: bytes
                  ) -> web.StreamResponse | Reply:
    """A whole body, decoded and served (timed from here: the body's arrival is not ours)."""
    started = time.perf_counter()
    try:
        data = decode(raw, max_depth=incoming.app[SETTINGS].max_json_depth)
    except ProtocolError as exc:
        return _json(error_body(exc), http_status(exc, "legacy"))
    return await _serve(incoming, service, data, started)


def _accepts_json(accept: str | None) -> bool:
    return accept is None or bool(media_types(accept) & {JSON, "application/*", "*/*"})


async def _serve(incoming: Incoming, service: CompiledService, data: Any,
                 started: float) -> web.StreamResponse | Reply:
    headers = incoming.headers
    app = incoming.app
    parsed = parse(data, headers, _raw_headers(incoming))
    envelope = parsed.envelope
    event = _Event(service, envelope, started)
    UPSTREAM_TIME.set([0.0])  # this request's upstream time, added to by the upstream client
    principal = None
    try:
        principal = await _principal(incoming, service, envelope)
        if parsed.rejection is not None:
            raise parsed.rejection
        inbound = parsed.inbound
        if inbound is None or inbound.is_notification:
            return web.Response(status=202)
        event.era = inbound.era
        caller = Caller.of(service, principal, headers.get("traceparent"))
        call = MethodCall(inbound, service, caller, app[LISTS])
        if "_meta" in inbound.params and incoming.stream_to is not None:
            # A progressToken may ask for a streamed answer (the lane hands such requests to
            # aiohttp, the only one to stream).
            token = progress_token(inbound, service, headers.get("Accept"))
            if token is not None:
                return await _streamed(incoming.stream_to, call, token, event, principal)
        with request_span(inbound.method, service.name, headers):
            outcome = await dispatch(app[CALLS], call)
        shaped = app[SHAPED]
        parts = reply_parts(inbound, service, outcome, shaped)
        event.log(outcome.error or "tool_error" if outcome.result.get("isError") else "ok",
                  outcome.upstream_status, principal=principal)
        if inbound.method in LIST_METHODS:  # a reload that changes the catalog changes it
            return Reply(parts, {"ETag": f'"{service.catalog_digest}"'})
        return Reply(parts)
    except AuthError as exc:
        event.log("refused_scope" if isinstance(exc, InsufficientScope) else "unauthenticated")
        return _auth_failure(incoming, service, exc, envelope.id)
    except IntrospectionThrottled as exc:
        event.log("throttled")
        return _throttled(exc, envelope.id)
    except AuthUnavailable as exc:
        event.log("auth_unavailable")
        return _json(error_reply(INTERNAL_ERROR, str(exc), envelope.id), 503,
                     {"Retry-After": "5"})
    except ProtocolError as exc:
        if exc.request_id is None:
            exc.request_id = envelope.id
        event.log("protocol_error", principal=principal)
        return _json(error_body(exc), http_status(exc, event.era))
    except Exception:
        event.log("internal_error", principal=principal)
        log.exception("unhandled_error", service=service.name, method=envelope.method)
        return _json(internal_error(envelope.id))


async def _streamed(request: web.Request, call: MethodCall, token: ProgressToken, event: _Event,
                    principal: Principal) -> web.StreamResponse:
    """A call that reports its progress over SSE (server/streaming.py). Until its first report
    it fails as any call does (raised, for _serve to answer as JSON); once the stream is open,
    an internal error is its last event, and a closed stream ends it as cancelled."""
    inbound, service = call.inbound, call.service
    stream = ProgressStream(request, token,
                            keepalive_s=request.app[SETTINGS].progress_keepalive_s)
    call = replace(call, caller=replace(call.caller, progress=stream.report))
    try:
        with request_span(inbound.method, service.name, request.headers):
            outcome = await stream.run(dispatch(request.app[CALLS], call))
        shaped = request.app[SHAPED]
        body = encode_reply(inbound, service, outcome, shaped)
    except StreamClosed:
        event.log("cancelled", principal=principal)
        return stream.cancelled()
    except Exception:
        if not stream.started:
            raise
        event.log("internal_error", principal=principal)
        log.exception("unhandled_error", service=service.name, method=inbound.method)
        return await stream.respond(orjson.dumps(internal_error(inbound.id)))
    event.log(outcome.error or "tool_error" if outcome.result.get("isError") else "ok",
              outcome.upstream_status, principal=principal)
    return await stream.respond(body)


async def _principal(incoming: Incoming, service: CompiledService,
                     envelope: Envelope) -> Principal:
    """The verified caller. Methods that need none (initialize, discover, ping, the anonymous
    tools) still work with a missing, bad or uncheckable token, so a client can always connect
    and prove the server is reachable.

    Raises:
        AuthError, AuthUnavailable: only when the request needs a credential.
    """
    needed = needs_credential(envelope, service)
    try:
        token = bearer_token(incoming.headers.getall("Authorization", ()))
        if token is not None:
            return await incoming.app[RESOLVER].resolve(
                service, token, incoming.public_base + service.spec.endpoint,
                address=incoming.remote)
    except (AuthError, AuthUnavailable):
        if needed:
            raise
        return ANONYMOUS
    if needed:
        raise AuthError(f"{service.spec.title} needs a bearer token for "
                        f"{envelope.method or 'this'}")
    return ANONYMOUS


def _auth_failure(incoming: Incoming, service: CompiledService, exc: AuthError,
                  request_id: Any) -> web.Response:
    default_scope = " ".join(s.name for s in service.spec.scopes)
    status = 403 if isinstance(exc, InsufficientScope) else 401
    data: dict[str, Any] = {"reason": exc.error or "missing_token"}
    if isinstance(exc, InsufficientScope):
        data["required_scopes"] = exc.missing
    body = error_reply(INVALID_REQUEST, exc.description, request_id, data)
    return _json(body, status, {"WWW-Authenticate": challenge(
        exc, metadata_url(incoming.public_base, service), default_scope)})


def _throttled(exc: IntrospectionThrottled, request_id: Any) -> web.Response:
    """A token left unchecked for lack of budget: 429 when its address ran out (that client
    should slow down), 503 when the process did (as when the authorization server cannot be
    asked). Never 401: that would tell the client to drop a token nobody looked at."""
    status, code = (429, INVALID_REQUEST) if exc.bound == "address" else (503, INTERNAL_ERROR)
    return _json(error_reply(code, str(exc), request_id), status,
                 {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})


def _raw_headers(incoming: Incoming) -> Iterator[tuple[str, str]]:
    """Header lines as sent, so a repeated routing header can be seen; decoded when read."""
    return ((k.decode("latin-1"), v.decode("latin-1")) for k, v in incoming.raw_headers)


class _Event:
    """How a request ended: counted and timed in the metrics, and bound to the request's one
    log event (the access line, which the HTTP server writes once the answer is sent)."""

    __slots__ = ("envelope", "era", "service", "started")

    def __init__(self, service: CompiledService, envelope: Envelope, started: float) -> None:
        self.service = service
        self.envelope = envelope
        self.started = started
        self.era: Era = "legacy"

    def log(self, outcome: str, upstream_status: int | None = None, *,
            principal: Principal | None = None) -> None:
        method = self.envelope.method if self.envelope.method in METHODS else "unknown"
        named = self.envelope.tool
        tool = (named if named in self.service.tools or named in self.service.prompts
                else "unknown" if named else "")
        seconds = time.perf_counter() - self.started
        upstream = UPSTREAM_TIME.get()
        child(REQUESTS, self.service.name, method, tool, outcome).inc()
        child(REQUEST_SECONDS, self.service.name, method).observe(seconds)
        summarise_request({
            "service": self.service.name, "mcp_method": method, "tool": tool or None,
            "outcome": outcome, "upstream_status": upstream_status,
            "mcp_ms": round(seconds * 1000, 2),
            "upstream_ms": round(upstream[0] * 1000, 2) if upstream else None,
            "who": who(principal)})


def who(principal: Principal | None) -> str | None:
    """Whom a request was for, as a short digest of account and subject: enough to follow one
    caller through the logs, never the token nor the raw ids."""
    if principal is None or principal.token is None:
        return None
    return _digest_of(principal.account, principal.subject)


@functools.lru_cache(maxsize=4096)  # the same callers come back: hash each once
def _digest_of(account: str | None, subject: str | None) -> str:
    name = f"{account or ''}\x00{subject or ''}"
    return hashlib.sha256(name.encode()).hexdigest()[:12]
