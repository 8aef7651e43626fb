"""Request and response plumbing shared by both emulations: the app key, query and body readers.

Nothing service-specific lives here; error bodies come from `errors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from sandbox.errors import UpstreamError
from sandbox.store import Sandbox

SANDBOX: web.AppKey[Sandbox] = web.AppKey("sandbox", Sandbox)

Params = dict[str, list[str]]


def params_of(request: web.Request) -> Params:
    """The query string as `{name: [values]}`, keeping repeated keys (`form_uuids[]=a&...`)."""
    return {key: request.query.getall(key) for key in set(request.query.keys())}


async def json_object(request: web.Request, invalid: Callable[[], UpstreamError]) -> dict[str, Any]:
    """The JSON object body; an empty body reads as `{}`.

    Raises:
        UpstreamError: from `invalid()` when the body is not a JSON object.
    """
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid() from exc
    if not isinstance(body, dict):
        raise invalid()
    return body


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # orjson: the stdlib encoder was half of the sandbox's time per page of feedback, and the
    # benchmark measures the gateway, not this emulation.
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), status=status,
                        headers=headers, content_type="application/json")


def base_url(request: web.Request) -> str:
    """The sandbox's own origin: `public_url` when configured, else what the caller used."""
    configured = request.app[SANDBOX].public_url
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.host}"
