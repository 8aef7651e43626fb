"""The sandbox upstream: one aiohttp app serving Retently v2 (`/api/v2`) and Refiner v1 (`/v1`)
from the JSON fixtures, for end-to-end tests and the demo. Off the gateway's request path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from sandbox import refiner, retently
from sandbox.errors import RETENTLY_MESSAGES, UpstreamError, retently_error
from sandbox.http import SANDBOX, reply
from sandbox.idempotency import idempotent_writes
from sandbox.ratelimit import RateLimiter
from sandbox.store import demo_tokens, load_sandbox


def _fixtures_dir() -> Path:
    """fixtures/sandbox of a source checkout, or its copy installed as package data."""
    package = Path(__file__).resolve().parent
    source = package.parent / "fixtures" / "sandbox"
    return source if (source / "tokens.json").is_file() else package / "fixtures"


FIXTURES_DIR = _fixtures_dir()
"""The repository's `fixtures/sandbox`, written by `fixtures/generate_sandbox.py`."""

DEMO_TOKENS: dict[str, str] = demo_tokens(FIXTURES_DIR)
"""Demo credentials of both services: token string -> what it can do."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _render(request: web.Request, error: web.HTTPException) -> web.Response:
    """Unknown paths and methods in the style of the service the path belongs to."""
    status = error.status
    if request.path.startswith("/v1"):
        text = {404: "Not found", 405: "Method not allowed"}.get(status, error.reason)
        return reply({"error": text}, status)
    if status in RETENTLY_MESSAGES:
        return reply(retently_error(status).body, status)
    return reply({"message": error.reason, "code": status, "data": None}, status)


@web.middleware
async def upstream_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render `UpstreamError` and routing errors as the emulated API's JSON bodies."""
    try:
        return await handler(request)
    except UpstreamError as error:
        return reply(error.body, error.status, error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _render(request, error)


PAGE_SIZE_PARAMS = ("limit", "page_length")
"""The query parameters that set a list's page size: Retently's and Refiner's."""


def page_size_cap(largest: int) -> Middleware:
    """A middleware lowering a requested page size to `largest` before the API reads it."""

    @web.middleware
    async def cap(request: web.Request, handler: Handler) -> web.StreamResponse:
        query = request.rel_url.query
        lowered = {name: str(largest) for name in PAGE_SIZE_PARAMS
                   if query.get(name, "").isdigit() and int(query[name]) > largest}
        if lowered:
            request = request.clone(rel_url=request.rel_url.update_query(lowered))
        return await handler(request)

    return cap


def create_sandbox_app(
    fixtures_dir: Path | None = None,
    *,
    rebase_dates: bool = True,
    rate_limits: bool = False,
    now: Callable[[], datetime] | None = None,
    public_url: str | None = None,
    max_page_size: int | None = None,
) -> web.Application:
    """Build a sandbox app with its own copy of the fixtures.

    Args:
        fixtures_dir: holds `tokens.json`, `retently/` and `refiner/`; default FIXTURES_DIR.
        rebase_dates: shift every fixture timestamp by whole days so the anchor lands on `now()`.
        rate_limits: enforce Retently 150/min per token and Refiner 4000/min per key (429).
        now: the clock for rebasing, rate limits, token expiry and write timestamps (UTC).
        public_url: this server's origin for metadata documents; default the request's host.
        max_page_size: serve lists in pages of at most this many rows, whatever `limit` or
            `page_length` asks (as an API with a lower maximum would), so that tests see paged
            tools read several pages of the fixtures.

    Raises:
        FileNotFoundError, KeyError: the fixtures are missing or incomplete.
    """
    clock = now or _utc_now
    sandbox = load_sandbox(
        fixtures_dir or FIXTURES_DIR,
        rebase_dates=rebase_dates,
        now=clock,
        limiter=RateLimiter(clock) if rate_limits else None,
        public_url=public_url,
    )
    middlewares: list[Middleware] = [idempotent_writes(clock), upstream_errors]
    if max_page_size is not None:
        middlewares.insert(0, page_size_cap(max_page_size))
    app = web.Application(middlewares=middlewares)
    app[SANDBOX] = sandbox
    app.router.add_routes(retently.routes())
    app.router.add_routes(refiner.routes())
    return app
