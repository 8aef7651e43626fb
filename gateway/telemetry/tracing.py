"""OpenTelemetry tracing, optional: a span per MCP request and a child span per upstream
exchange, the caller's `traceparent` continued and the child's sent upstream.

Off by default, and then free: nothing is imported and each hook is one `is None` test. On with
GATEWAY_TRACING=true and the `tracing` extra installed (opentelemetry-sdk and the OTLP exporter);
spans go where the standard OTEL_EXPORTER_OTLP_* variables say. Without `traceparent` handling by
OpenTelemetry, the gateway still forwards a caller's valid `traceparent` unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Final

_tracer: Any = None
_propagator: Any = None


def enable(tracer: Any = None) -> None:
    """Turn tracing on for this process: with `tracer` (tests pass one wired to an in-memory
    exporter), else one exporting over OTLP.

    Raises:
        ImportError: the `tracing` extra is not installed.
    """
    global _tracer, _propagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if tracer is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "mcp-gateway"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        tracer = provider.get_tracer("mcp-gateway")
    _tracer = tracer
    _propagator = TraceContextTextMapPropagator()


def disable() -> None:
    global _tracer, _propagator
    _tracer = _propagator = None


def enabled() -> bool:
    return _tracer is not None


_OFF: Final = contextlib.nullcontext()


def request_span(method: str, service: str,
                 headers: Mapping[str, str]) -> contextlib.AbstractContextManager[Any]:
    """The span of one MCP request, continuing the caller's trace when it sent one (a reusable
    no-op when tracing is off)."""
    return _OFF if _tracer is None else _request_span(method, service, headers)


def upstream_span(method: str, service: str,
                  headers: MutableMapping[str, str]) -> contextlib.AbstractContextManager[Any]:
    """A child span of one upstream exchange; its context replaces the `traceparent` sent."""
    return _OFF if _tracer is None else _upstream_span(method, service, headers)


@contextlib.contextmanager
def _request_span(method: str, service: str, headers: Mapping[str, str]) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    parent = _propagator.extract(carrier={"traceparent": headers.get("traceparent", "")})
    with _tracer.start_as_current_span(f"mcp {method}", context=parent,
                                       kind=SpanKind.SERVER) as span:
        span.set_attribute("mcp.method", method)
        span.set_attribute("mcp.service", service)
        yield span


@contextlib.contextmanager
def _upstream_span(method: str, service: str,
                   headers: MutableMapping[str, str]) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(f"upstream {method}", kind=SpanKind.CLIENT) as span:
        span.set_attribute("http.request.method", method)
        span.set_attribute("mcp.service", service)
        _propagator.inject(headers)
        yield span
