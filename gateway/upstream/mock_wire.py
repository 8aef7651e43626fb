"""An in-memory upstream wire, for tests that run the gateway's own request path without a network.

Each exchange is answered by a function, recorded, and held to the body bound exactly as the real
clients hold it (wire.py). Imports neither aiohttp nor httpx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from gateway.errors import WireError
from gateway.upstream.wire import Answer


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping that keeps the spelling it was given."""

    __slots__ = ("_items",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._items = {key.lower(): (key, value) for key, value in headers.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request as the gateway sent it: the URL exactly as built, the body as bytes."""

    method: str
    url: str
    headers: Headers
    body: bytes | None


Handler = Callable[[Exchange], Answer | Awaitable[Answer]]
"""Answers one exchange, or raises WireError for a failure of the wire itself."""


class MockWire:
    """A `Wire` whose upstream is a function. `exchanges` lists every request, in order."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.exchanges: list[Exchange] = []
        self.closed = False

    async def fetch(self, method: str, url: str, *, headers: Mapping[str, str],
                    body: bytes | None, max_bytes: int) -> Answer:
        """Record the exchange and answer it through the handler.

        Raises:
            WireError: what the handler raised, or too_large for a body over `max_bytes`
                (declared or read), as the real clients do.
        """
        exchange = Exchange(method, url, Headers(headers), body)
        self.exchanges.append(exchange)
        outcome = self._handler(exchange)
        answer = outcome if isinstance(outcome, Answer) else await outcome
        answered = Headers(answer.headers)
        declared = answered.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise WireError("too_large", "the declared length is over the bound")
        if len(answer.body) > max_bytes:
            raise WireError("too_large", "the body grew over the bound")
        return Answer(answer.status, answered, answer.body)

    async def aclose(self) -> None:
        self.closed = True
