"""Structured logging: configured once, secrets redacted by a processor, JSON when not a TTY.

Imports only settings. The httpx/httpcore loggers are held at WARNING because they print URLs
and headers.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, Final

import structlog

from gateway.settings import Settings

SECRET_KEYS: Final = frozenset({"authorization", "token", "access_token", "refresh_token",
                                "api_key", "password", "secret", "confirmation_token",
                                "client_secret", "cookie"})
_BEARER: Final = re.compile(
    r"(?i)\b(bearer\s+|api_key=|access_token=|refresh_token=|token=)[^\s&'\"\\,;]+")
"""A credential inside any text: a bearer value, or a token-like query parameter."""


REQUEST_SUMMARY: Final = contextvars.ContextVar[Mapping[str, Any] | None](
    "request_summary", default=None)
"""What the current request came to (service, method, outcome, times, who), for the lines
logged after it within the request: the access line above all."""


_NO_IDS: Final[Mapping[str, str]] = MappingProxyType({})
REQUEST_IDS: Final = contextvars.ContextVar[Mapping[str, str]]("request_ids", default=_NO_IDS)
"""Our id of the current request, and the caller's own (`correlation_id`) when it gave a usable
one: one context variable set once a request, where structlog's own (cleared, then bound once
for each id) cost about 2 us a request."""


def begin_request_log(ids: Mapping[str, str]) -> None:
    """At the start of a request: its ids on every line it logs, and nothing of another
    request's summary carried over."""
    REQUEST_IDS.set(ids)
    if REQUEST_SUMMARY.get() is not None:
        REQUEST_SUMMARY.set(None)


def request_ids() -> Mapping[str, str]:
    """The current request's ids (empty outside a request)."""
    return REQUEST_IDS.get()


def summarise_request(fields: Mapping[str, Any]) -> None:
    """Set the request's summary: one context variable, where binding each field as its own
    (structlog's contextvars) made eight new contexts a request, 3.8% of a `tools/list`'s
    instructions."""
    REQUEST_SUMMARY.set(fields)


def merge_request_summary(_logger: Any, _name: str, event: MutableMapping[str, Any]
                          ) -> MutableMapping[str, Any]:
    """structlog processor: the request's ids and summary into each line, under what the line
    says itself (as structlog merges its context variables)."""
    for key, value in REQUEST_IDS.get().items():
        event.setdefault(key, value)
    fields = REQUEST_SUMMARY.get()
    if fields:
        for key, value in fields.items():
            event.setdefault(key, value)
    return event


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]
                   ) -> MutableMapping[str, Any]:
    """structlog processor: drop secret-named keys and bearer-looking values anywhere."""
    for key in list(event):
        value = event[key]
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
        elif isinstance(value, str) and _BEARER.search(value):
            event[key] = _BEARER.sub(r"\1[redacted]", value)
    return event


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the stdlib root logger once per process. Records of the standard
    library's loggers (aiohttp's server and access loggers among them) go through the same
    processors as the gateway's own, so no line reaches the output without the redaction."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    as_json = settings.log_json if settings.log_json is not None else not sys.stderr.isatty()
    renderer: Any = (structlog.processors.JSONRenderer() if as_json
                     else structlog.dev.ConsoleRenderer(colors=False))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_request_summary,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line (message and newline together): workers share one stderr, and
        # two writes each could interleave into one line.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact_secrets, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
