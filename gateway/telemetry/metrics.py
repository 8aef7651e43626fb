"""Prometheus metrics: what the gateway counts and times, and the /metrics answer.

Label values are bounded by construction: services, tools and methods come from the loaded specs
and the protocol (a name a caller made up is counted as "unknown"), outcomes and failure kinds
from fixed lists here; never an id, a token or an account.

Under `serve --workers N` the parent sets PROMETHEUS_MULTIPROC_DIR before any worker starts, so
each worker writes its samples to files there and any worker answers /metrics with the sum.
"""

from __future__ import annotations

import contextvars
import os
from typing import Final, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROCESS_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                          5.0, 10.0, 30.0)

REQUESTS: Final = Counter(
    "mcp_gateway_requests", "MCP requests, by service, method, tool and outcome (ok, tool_error, "
    "upstream_error, upstream_unavailable, busy, circuit_open, bad_upstream_answer, rate_limited, "
    "unauthenticated, refused_scope, throttled, auth_unavailable, protocol_error, internal_error, "
    "cancelled)",
    ["service", "method", "tool", "outcome"])
REQUEST_SECONDS: Final = Histogram(
    "mcp_gateway_request_seconds", "Time to answer an MCP request, by service and method",
    ["service", "method"], buckets=LATENCY_BUCKETS)
UPSTREAM_SECONDS: Final = Histogram(
    "mcp_gateway_upstream_seconds", "Time of one upstream exchange, by service",
    ["service"], buckets=LATENCY_BUCKETS)
UPSTREAM_RESPONSES: Final = Counter(
    "mcp_gateway_upstream_responses", "Upstream answers, by service and HTTP status",
    ["service", "status"])
UPSTREAM_FAILURES: Final = Counter(
    "mcp_gateway_upstream_failures", "Upstream exchanges without an answer, by service and kind "
    "(timeout, connect, broken, too_large) and requests not sent (busy, circuit_open)",
    ["service", "kind"])
UPSTREAM_RETRIES: Final = Counter(
    "mcp_gateway_upstream_retries", "Reads sent again after a failure, by service", ["service"])
UPSTREAM_IN_USE: Final = Gauge(
    "mcp_gateway_upstream_in_use", "Upstream requests open now, by service", ["service"],
    multiprocess_mode="livesum")
SLOT_WAITS: Final = Counter(
    "mcp_gateway_upstream_slot_waits", "Requests that found their tool's or service's slots "
    "taken, by service and how it ended (got_slot, busy)", ["service", "outcome"])
INTROSPECTIONS: Final = Counter(
    "mcp_gateway_introspection_cache", "Token checks by result (hit: answered from the cache; "
    "miss: the authorization server was asked)", ["service", "result"])
WRITES: Final = Counter(
    "mcp_gateway_writes", "Write phases by service, tool, phase (preview, execute) and outcome "
    "(the audit record's)", ["service", "tool", "phase", "outcome"])
BREAKER_OPEN: Final = Gauge(
    "mcp_gateway_breaker_open", "1 while a service's circuit breaker is open or probing",
    ["service"], multiprocess_mode="livemax")
BREAKER_OPENED: Final = Counter(
    "mcp_gateway_breaker_opened", "Times a service's circuit breaker opened", ["service"])
LANE_ERRORS: Final = Counter(
    "mcp_gateway_lane_errors", "Requests the fast lane failed to answer and closed with a 500 "
    "(each a bug, logged as lane_error)")
RELOADS: Final = Counter(
    "mcp_gateway_spec_reloads", "Spec reloads by outcome (accepted, refused)", ["outcome"])
SPECS_LOADED: Final = Gauge(
    "mcp_gateway_specs_loaded_timestamp_seconds", "When the spec tree served now was loaded, "
    "labelled with its digest (0 for trees no longer served)", ["digest"],
    multiprocess_mode="livemax")


Labelled = TypeVar("Labelled", Counter, Gauge, Histogram)
_CHILDREN: dict[tuple[object, tuple[str, ...]], object] = {}


def child(metric: Labelled, *labels: str) -> Labelled:
    """`metric.labels(*labels)`, kept: on the request path that lookup (label checks, a lock)
    costs more than the count itself. Bounded as the label values are (see above)."""
    key = (metric, labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found  # type: ignore[return-value]


def exposition() -> tuple[bytes, str]:
    """The text /metrics answers with, and its content type: this process's metrics, or every
    worker's summed in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def specs_served(digest: str, loaded_at: float, previous: str | None = None) -> None:
    if previous is not None and previous != digest:
        SPECS_LOADED.labels(previous).set(0)
    SPECS_LOADED.labels(digest).set(loaded_at)


def forget_worker(pid: int) -> None:
    """A worker ended: its live gauges (upstream in use, breakers) no longer count."""
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def enable_multiprocess(folder: str) -> None:
    """Samples go to files in `folder`, summed by whichever worker answers /metrics. Called by
    the parent of the workers before they start (every metric here is labelled, so no sample
    exists yet)."""
    os.environ[MULTIPROCESS_DIR] = folder
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


UPSTREAM_TIME: Final = contextvars.ContextVar[list[float] | None]("upstream_time", default=None)
"""Seconds the current request spent in upstream exchanges (a one-item list the endpoint sets
and the upstream client adds to), for the request's log event."""


def upstream_exchange(service: str, seconds: float, status: int | None,
                      failure: str | None = None) -> None:
    """One upstream exchange: timed, its status or failure counted, and added to the request's
    upstream time."""
    child(UPSTREAM_SECONDS, service).observe(seconds)
    if status is not None:
        child(UPSTREAM_RESPONSES, service, str(status)).inc()
    if failure is not None:
        UPSTREAM_FAILURES.labels(service, failure).inc()
    spent = UPSTREAM_TIME.get()
    if spent is not None:
        spent[0] += seconds
