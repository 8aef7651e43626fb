"""Error answers of the two emulated APIs, raised anywhere and rendered once by the app.

Pure: one exception type carrying status, JSON body and headers. Retently bodies follow
upstream-retently.md §5.3, Refiner bodies upstream-refiner.md §3.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RETENTLY_MESSAGES: dict[int, str] = {
    400: "Bad request.",
    401: "Please check your API Key to make sure it's valid.",
    403: "Forbidden.",
    404: "Not found.",
    405: "Method not allowed.",
    429: "Too many requests.",
}


class UpstreamError(Exception):
    """An error response of the emulated upstream: status, JSON body, extra headers."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def retently_error(
    status: int, message: str | None = None, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """`{"message", "code", "data": null}` with the documented text for `status`."""
    text = message if message is not None else RETENTLY_MESSAGES[status]
    return UpstreamError(status, {"message": text, "code": status, "data": None}, headers)


def refiner_error(
    status: int, text: str, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """`{"error": text}`, Refiner's usual error body."""
    return UpstreamError(status, {"error": text}, headers)


def refiner_unknown_key() -> UpstreamError:
    """Refiner answers a well-formed but unknown key with 404 and `message`, not `error`."""
    return UpstreamError(404, {"message": "API key not valid or does not exist"})
