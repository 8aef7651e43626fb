"""The baseline: a bare aiohttp pass-through proxy. For each workload it forwards the same
upstream request the gateway makes and returns the upstream body, with no MCP work at all. This
is the practical limit of the stack; for tools/list (no upstream call) it answers a fixed body.

    python -m bench.baseline --port 9000 --upstream http://127.0.0.1:8081 --tools-list FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.workloads import WORKLOADS

SESSION = web.AppKey("session", aiohttp.ClientSession)


def create_baseline(upstream: str, tools_list: bytes) -> web.Application:
    app = web.Application()

    async def session_lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        yield
        await app[SESSION].close()

    async def proxy(request: web.Request) -> web.Response:
        workload = WORKLOADS[request.headers["X-Bench-Workload"]]
        await request.read()
        if not workload.upstream_path:
            return web.Response(body=tools_list, content_type="application/json")
        headers = {"Authorization": workload.upstream_auth, "Accept": "application/json"}
        if workload.service == "refiner":
            headers["X-Refiner-Project"] = "a1b2c3d0-1111-11ee-8c3a-3f2b1e2d4c5a"
        async with request.app[SESSION].get(upstream + workload.upstream_path,
                                            headers=headers) as answer:
            body = await answer.read()
        return web.Response(body=body, status=answer.status, content_type="application/json")

    app.cleanup_ctx.append(session_lifecycle)
    app.router.add_post("/{tail:.*}", proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--tools-list", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(create_baseline(args.upstream, args.tools_list.read_bytes()),
                host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
