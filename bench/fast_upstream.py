"""The fast upstream: a static upstream on loopback, so that the upstream is never what limits a
measurement. The first time it sees a GET (method, path and query, credential, project
header) it asks the sandbox and keeps the answer (status, body, headers); every later
request with the same key gets those bytes from memory. In a benchmark run that first time
falls in the warm-up, so the counted calls are all answered from memory, with the bytes the
sandbox would have answered.

A page asking for more rows than the sandbox has (Retently's demo account holds 350 feedback
rows; a list_feedback page of 500 is asked for on the scaling curve) is filled up by repeating
the sandbox's rows with distinct ids, customer ids and emails, so the gateway de-identifies 500
different people. Anything but a GET (token introspection) is passed to the sandbox each time.

    python -m bench.fast_upstream --port 9002 --sandbox http://127.0.0.1:8081
    GET /_bench/stats -> {"hits", "captured", "padded", "passed", "keys"}: counts
"""

from __future__ import annotations

import argparse
import hashlib
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

DROPPED_HEADERS = frozenset({"content-length", "date", "server", "transfer-encoding",
                             "connection", "keep-alive", "content-encoding"})
PASSED_HEADERS = ("Authorization", "Accept", "Content-Type", "X-Refiner-Project")
NAMESPACE = uuid.UUID("6f1c7a52-0b7e-4d1e-9c55-2f0b5e1d7a11")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDict[str]


@dataclass
class Store:
    sandbox: str
    session: aiohttp.ClientSession | None = None
    cache: dict[tuple[str, str | None, str | None], Answer] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("hits", "captured", "padded", "passed"), 0))


STATE = web.AppKey("state", Store)


def _hex24(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:24]


def _email(email: Any, copy: int) -> Any:
    if not isinstance(email, str) or "@" not in email:
        return email
    local, _, domain = email.partition("@")
    return f"{local}+{copy}@{domain}"


def vary_feedback(row: dict[str, Any], copy: int) -> dict[str, Any]:
    """A Retently feedback row as if another customer had answered."""
    return {**row, "id": _hex24(f"{row['id']}:{copy}"),
            "customerId": _hex24(f"{row.get('customerId')}:{copy}"),
            "email": _email(row.get("email"), copy)}


def vary_response(item: dict[str, Any], copy: int) -> dict[str, Any]:
    """A Refiner response as if another contact had answered."""
    contact = item.get("contact")
    if isinstance(contact, dict):
        contact = {**contact, "uuid": str(uuid.uuid5(NAMESPACE, f"{contact.get('uuid')}:{copy}")),
                   "email": _email(contact.get("email"), copy)}
    return {**item, "uuid": str(uuid.uuid5(NAMESPACE, f"{item['uuid']}:{copy}")),
            "contact": contact}


def filled(rows: list[dict[str, Any]], wanted: int, vary: Any) -> list[dict[str, Any]]:
    """`rows`, then varied copies of them in turn until there are `wanted`."""
    out = list(rows)
    while rows and len(out) < wanted:
        copy = len(out) // len(rows)
        out.append(vary(rows[len(out) % len(rows)], copy))
    return out


def pad(path: str, query: Any, body: bytes) -> bytes | None:
    """The body filled up to the rows the request asked for, or None when it has them all (or
    is not a first page of feedback or responses)."""
    try:
        page = orjson.loads(body)
        if path == "/api/v2/feedback" and query.get("page", "1") == "1":
            wanted, data = int(query.get("limit", "20")), page["data"]
            if len(data["responses"]) >= wanted:
                return None
            data["responses"] = filled(data["responses"], wanted, vary_feedback)
            data["total"] = max(data["total"], wanted)
            data["pages"] = max(1, math.ceil(data["total"] / data["limit"]))
        elif path == "/v1/responses" and "page_cursor" not in query:
            wanted = int(query.get("page_length", "100"))
            if len(page["items"]) >= wanted:
                return None
            page["items"] = filled(page["items"], wanted, vary_response)
            page["pagination"]["items_count"] = max(page["pagination"]["items_count"], wanted)
        else:
            return None
    except (ValueError, KeyError, TypeError):
        return None
    return orjson.dumps(page, option=orjson.OPT_NON_STR_KEYS)


async def _ask_sandbox(request: web.Request, body: bytes) -> Answer:
    state = request.app[STATE]
    assert state.session is not None
    headers = {k: request.headers[k] for k in PASSED_HEADERS if k in request.headers}
    async with state.session.request(request.method, state.sandbox + request.path_qs,
                                        headers=headers, data=body or None) as answer:
        raw = await answer.read()
        kept = CIMultiDict((k, v) for k, v in answer.headers.items()
                           if k.lower() not in DROPPED_HEADERS)
        return Answer(answer.status, raw, kept)


async def answer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.read()
    if request.method != "GET":
        state.stats["passed"] += 1
        live = await _ask_sandbox(request, body)
        return web.Response(body=live.body, status=live.status, headers=live.headers)
    key = (request.path_qs, request.headers.get("Authorization"),
           request.headers.get("X-Refiner-Project"))
    kept = state.cache.get(key)
    if kept is None:
        kept = await _ask_sandbox(request, body)
        padded = pad(request.path, request.query, kept.body) if kept.status == 200 else None
        if padded is not None:
            kept = Answer(kept.status, padded, kept.headers)
            state.stats["padded"] += 1
        state.cache[key] = kept
        state.stats["captured"] += 1
    else:
        state.stats["hits"] += 1
    return web.Response(body=kept.body, status=kept.status, headers=kept.headers)


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({**state.stats, "keys": len(state.cache)})


def create_fast_upstream(sandbox: str) -> web.Application:
    app = web.Application()
    app[STATE] = Store(sandbox.rstrip("/"))

    async def session_lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        app[STATE].session = session
        yield
        await session.close()

    app.cleanup_ctx.append(session_lifecycle)
    app.router.add_get("/_bench/stats", stats)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sandbox", required=True, help="where answers are captured from")
    args = parser.parse_args()
    web.run_app(create_fast_upstream(args.sandbox), host="127.0.0.1", port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
