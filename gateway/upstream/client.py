"""The upstream edge: render a tool's request, send it over its service's pool, map failures.

Every wire failure becomes the most specific gateway error, so a slow, broken, huge or non-JSON
upstream is always a readable tool error, never a 500 or a hang. Around each send: the circuit
breakers (breakers.py) refuse at once what a failing upstream would refuse anyway, the bulkheads
(bulkheads.py) bound what one tool or service holds, and reads are retried within their
deadline when the upstream said "not now" (retries.py). Writes are sent once.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlencode

import orjson

from gateway.calls.context import Caller
from gateway.errors import (
    AuthUnavailable,
    CircuitOpen,
    GatewayBusy,
    UpstreamUnavailable,
    WireError,
)
from gateway.settings import Settings
from gateway.spec.compiled import CompiledRequest
from gateway.spec.templates import RenderContext
from gateway.telemetry.metrics import (
    BREAKER_OPEN,
    BREAKER_OPENED,
    UPSTREAM_FAILURES,
    UPSTREAM_RETRIES,
    upstream_exchange,
)
from gateway.telemetry.tracing import upstream_span
from gateway.upstream.answers import (
    UpstreamResponse,
    decode_response,
    unavailable_message,
)
from gateway.upstream.breakers import Breaker, Breakers, State
from gateway.upstream.bulkheads import Bulkheads
from gateway.upstream.deadlines import Deadlines
from gateway.upstream.pools import AUTHORIZATION_SERVERS, WirePools
from gateway.upstream.requests import UpstreamRequest, build_request, full_url
from gateway.upstream.retries import (
    BREAKER_STATUSES,
    RETRY_STATUSES,
    RetryPolicy,
    retry_after_s,
)
from gateway.upstream.wire import Answer

_AUTHORIZATION_ANSWER_BYTES: Final = 65_536


class Upstream:
    """Sends rendered requests over the pooled wires; bounded in time, size and share."""

    def __init__(self, pools: WirePools, settings: Settings, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 draw: Callable[[], float] = random.random) -> None:
        self._pools = pools
        self._settings = settings
        self._clock = clock
        self._wall = wall
        self._draw = draw
        self._bulkheads = Bulkheads(settings.upstream_max_connections,
                                    settings.upstream_queue_wait_s)
        self._breakers = Breakers(settings.breaker_failures, settings.breaker_open_s,
                                  settings.breaker_longest_wait_s)
        self._policy = RetryPolicy(attempts=settings.upstream_retry_attempts)
        self._deadlines = Deadlines()

    async def send(self, request: UpstreamRequest, caller: Caller, *, retry: bool,
                   pruned: Callable[[bytes], Any] | None = None) -> UpstreamResponse:
        """Send one request of `caller` (again, for a `retry`able read that may) and decode
        its JSON answer (`pruned`: see decode_response).

        Raises:
            UpstreamError: a non-2xx answer (status and the upstream's own message).
            UpstreamUnavailable: timeout, connection failure, or a body over the size bound;
                GatewayBusy and CircuitOpen when it was not sent.
            ResponseShapeError: a 2xx answer that is not JSON.
        """
        settings = self._settings
        limit = min(caller.upstream.timeout_s or settings.upstream_timeout_s,
                    settings.upstream_timeout_s)
        deadline = self._clock() + limit
        keys = tuple(caller.upstream.error_message)
        attempt = 1
        while True:
            try:
                answer = await self._once(request, caller, deadline, limit)
            except UpstreamUnavailable as failed:
                wait = self._retry_wait(retry, attempt, deadline, failed.retry_after_s)
                if wait is None or not _worth_retrying(failed):
                    raise
            else:
                waited = retry_after_s(answer.headers.get("retry-after"), self._wall())
                wait = (self._retry_wait(retry, attempt, deadline, waited)
                        if answer.status in RETRY_STATUSES else None)
                if wait is None:
                    return decode_response(answer.status, answer.headers, answer.body, keys,
                                           retry_after_s=waited, pruned=pruned)
            UPSTREAM_RETRIES.labels(caller.service).inc()
            await asyncio.sleep(wait)
            attempt += 1

    def _retry_wait(self, retry: bool, attempt: int, deadline: float,
                    asked_s: float | None) -> float | None:
        """How long to wait before sending again, or None when not to: a write, the last
        attempt, or a wait (asked by Retry-After, or the backoff) the deadline cannot hold."""
        if not retry or attempt >= self._policy.attempts:
            return None
        if asked_s is not None and asked_s > self._policy.longest_wait_s:
            return None
        wait = asked_s if asked_s is not None else self._policy.backoff_s(attempt, self._draw)
        return wait if self._clock() + wait < deadline else None

    async def _once(self, request: UpstreamRequest, caller: Caller, deadline: float,
                    timeout_s: float) -> Answer:
        """One send through the breakers and bulkheads; the breakers learn from its outcome.

        Raises:
            UpstreamUnavailable: see send.
        """
        service = self._breakers.of_service(caller.service)
        held = self._breakers.of_caller(caller.service, caller.credential_key)
        was_open = service.state is not State.CLOSED
        try:
            return await self._through_breakers(service, held, request, caller, deadline,
                                                timeout_s)
        finally:
            is_open = service.state is not State.CLOSED
            if is_open != was_open:
                BREAKER_OPEN.labels(caller.service).set(int(is_open))
                if is_open and service.state is State.OPEN:
                    BREAKER_OPENED.labels(caller.service).inc()

    async def _through_breakers(self, service: Breaker, held: Breaker | None,
                                request: UpstreamRequest, caller: Caller,
                                deadline: float, timeout_s: float) -> Answer:
        now = self._clock()
        self._admit(service, caller, now)
        if held is not None:
            try:
                self._admit(held, caller, now)
            except CircuitOpen:
                service.settled_without_answer()
                raise
        told = False
        try:
            async with self._bulkheads.slot(caller.service, caller.tool, caller.tool_cap):
                answer = await self._exchange(caller.service, request,
                                              deadline - self._clock(), timeout_s)
            told = True
        except UpstreamUnavailable as failed:
            if not isinstance(failed, GatewayBusy):
                service.failed(self._clock())
                told = True
            raise
        finally:
            if not told:
                service.settled_without_answer()
                if held is not None:
                    held.settled_without_answer()
        self._learn(service, held, caller, answer)
        return answer

    def _admit(self, breaker: Breaker, caller: Caller, now: float) -> None:
        wait = breaker.admit(now)
        if wait is not None:
            UPSTREAM_FAILURES.labels(caller.service, "circuit_open").inc()
            raise CircuitOpen(f"Not sent: the {caller.service} upstream {breaker.reason}, so "
                              "the gateway holds its requests back for now. Retry in "
                              f"{max(1, math.ceil(wait))} seconds.", retry_after_s=wait)

    def _learn(self, service: Breaker, held: Breaker | None, caller: Caller,
               answer: Answer) -> None:
        now, status = self._clock(), answer.status
        waited = self._breakers.bounded(
            retry_after_s(answer.headers.get("retry-after"), self._wall()))
        if status == 429:
            if waited is not None:  # a rate limit, most likely this caller's: hold it back
                self._breakers.hold_caller(caller.service, caller.credential_key, now, waited)
            service.succeeded()  # the upstream itself answers
            return
        if held is not None:
            held.succeeded()
        if status in BREAKER_STATUSES:
            service.failed(now, waited if status == 503 else None,
                           reason=f"answered HTTP {status}")
        else:
            service.succeeded()

    async def _exchange(self, service: str, request: UpstreamRequest, limit: float,
                        timeout_s: float) -> Answer:
        """One exchange, cut at `limit` seconds (what is left of the call's `timeout_s`, the
        figure a timeout reports: the time left depends on how busy the process was).

        Raises:
            UpstreamUnavailable: see send.
        """
        cap = self._settings.upstream_max_response_bytes
        wire = self._pools.of(service)
        started = self._clock()
        try:
            with upstream_span(request.method, service, request.headers):
                async with self._deadlines.within(max(limit, 0.001)):
                    answer = await wire.fetch(request.method, full_url(request),
                                              headers=request.headers, body=request.body,
                                              max_bytes=cap)
        except TimeoutError as exc:
            upstream_exchange(service, self._clock() - started, None, "timeout")
            raise UpstreamUnavailable(
                f"The upstream did not answer within {timeout_s:.3g} seconds; retry later.",
                maybe_delivered=True) from exc
        except WireError as exc:
            upstream_exchange(service, self._clock() - started, None, exc.kind)
            # Only a failed connection proves the request never left; any later failure may
            # come after the upstream acted on it.
            raise UpstreamUnavailable(
                unavailable_message(exc, self._clock() - started, cap),
                maybe_delivered=exc.kind != "connect") from exc
        upstream_exchange(service, self._clock() - started, answer.status)
        return answer

    async def fetch_document(self, url: str) -> dict[str, Any]:
        """GET a small JSON document (discovery metadata).

        Raises:
            UpstreamUnavailable: no timely 200 answer with a JSON object.
        """
        try:
            return await self._authorization_server("GET", url, None)
        except AuthUnavailable as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def send_spec(self, request: CompiledRequest, caller: Caller, ctx: RenderContext, *,
                        extra_query: Mapping[str, Any] | None = None,
                        extra_headers: Mapping[str, str] | None = None,
                        retry: bool | None = None,
                        pruned: Callable[[bytes], Any] | None = None) -> UpstreamResponse:
        """Render a spec's request for one call and send it with the service's bounds;
        `retry` overrides whether the request may be sent again (a write's may not);
        `pruned` decodes only what the tool reads (see decode_response).

        Raises:
            ProtocolError, UpstreamError, UpstreamUnavailable, ResponseShapeError: see
            build_request and send.
        """
        rendered = build_request(request, caller.upstream, ctx, caller.token,
                                 traceparent=caller.traceparent, extra_query=extra_query,
                                 extra_headers=extra_headers)
        return await self.send(rendered, caller, pruned=pruned,
                               retry=request.retryable if retry is None else retry)

    async def introspect(self, url: str, token: str) -> Mapping[str, Any]:
        """Ask an RFC 7662 introspection endpoint about a token.

        Raises:
            AuthUnavailable: no timely, well-formed answer (never read as "valid").
        """
        return await self._authorization_server("POST", url, {"token": token})

    async def _authorization_server(self, method: str, url: str,
                                    form: dict[str, str] | None) -> dict[str, Any]:
        """One small JSON exchange with an authorization server, bounded in time and size.

        Raises:
            AuthUnavailable: no timely 200 answer holding a JSON object.
        """
        limit = self._settings.introspection_timeout_s
        headers = {"Accept": "application/json"}
        body = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form).encode()
        try:
            async with asyncio.timeout(limit):
                answer = await self._pools.of(AUTHORIZATION_SERVERS).fetch(
                    method, url, headers=headers, body=body,
                    max_bytes=_AUTHORIZATION_ANSWER_BYTES)
        except TimeoutError as exc:
            raise AuthUnavailable(
                f"The authorization server did not answer within {limit:g} seconds; "
                "retry shortly.") from exc
        except WireError as exc:
            reason = "its answer was too large" if exc.kind == "too_large" else exc.detail
            raise AuthUnavailable(
                f"The authorization server could not be reached ({reason}); "
                "retry shortly.") from exc
        if answer.status != 200:
            raise AuthUnavailable(
                f"The authorization server answered HTTP {answer.status}; retry shortly.")
        try:
            parsed = orjson.loads(answer.body)
        except orjson.JSONDecodeError as exc:
            raise AuthUnavailable("The authorization server's answer was not JSON.") from exc
        if not isinstance(parsed, dict):
            raise AuthUnavailable("The authorization server's answer was not an object.")
        return parsed




def _worth_retrying(failed: UpstreamUnavailable) -> bool:
    """A read is sent again after a refused or broken connection; not after a timeout (the
    deadline is spent), a body too large, a busy gateway, or an open circuit (whose point is
    to fail fast)."""
    cause = failed.__cause__
    return isinstance(cause, WireError) and cause.kind in ("connect", "broken")
