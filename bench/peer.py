"""The peer: FastMCP's OpenAPI proxy of the same upstream endpoints, stateless, JSON responses.
Runs in its own virtual environment (build/peer-venv), because FastMCP pins its own `mcp`.

    build/peer-venv/bin/python bench/peer.py --port 9001 --upstream http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse

import httpx2
import uvicorn
from fastmcp import FastMCP

ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
REFINER = "refiner_demo_full"
PROJECT = "a1b2c3d0-1111-11ee-8c3a-3f2b1e2d4c5a"


def openapi() -> dict[str, object]:
    """The two endpoints of the read workloads, as an OpenAPI 3.1 description."""
    query = [{"name": name, "in": "query", "required": False, "schema": schema}
             for name, schema in (("page", {"type": "integer"}), ("limit", {"type": "integer"}),
                                  ("sort", {"type": "string"}),
                                  ("page_length", {"type": "integer"}))]
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {
        "type": "object"}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "bench upstream", "version": "1"},
        "paths": {
            "/api/v2/feedback": {"get": {"operationId": "list_feedback",
                                         "parameters": query[:3], "responses": ok}},
            "/v1/responses": {"get": {"operationId": "get_responses",
                                      "parameters": query[3:], "responses": ok}},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    # One static credential: the sandbox accepts the analyst key on Retently paths and the
    # Refiner token (with its project header) on Refiner paths.
    client = httpx2.AsyncClient(base_url=args.upstream, headers={
        "Authorization": f"api_key={ANALYST}", "X-Refiner-Project": PROJECT})

    async def refiner_auth(request: httpx2.Request) -> None:
        if request.url.path.startswith("/v1/"):
            request.headers["Authorization"] = f"Bearer {REFINER}"

    client.event_hooks["request"].append(refiner_auth)
    server = FastMCP.from_openapi(openapi_spec=openapi(), client=client, name="peer",
                                  validate_output=False)
    app = server.http_app(path="/mcp", stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
