"""The benchmark's workloads: the MCP request each target receives, and what the baseline proxy
forwards upstream for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
WRITER = "rtly_mcp_pat_demowriter_s3cr3t"
ADMIN = "rtly_mcp_pat_demoadmin_s3cr3t"
REFINER = "refiner_demo_full"
PROJECT = "a1b2c3d0-1111-11ee-8c3a-3f2b1e2d4c5a"
FEEDBACK_ID = "6b002f80afea618e23cd19bf"
MCP_HEADERS = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}


@dataclass(frozen=True)
class Workload:
    name: str
    service: str
    token: str
    method: str
    params: dict[str, Any]
    upstream_path: str
    """What the bare proxy forwards (path and query below the upstream base)."""
    upstream_auth: str
    peer_tool: str | None = None
    """The FastMCP OpenAPI tool doing the same upstream call, when the peer has one."""
    peer_arguments: dict[str, Any] | None = None
    rows: int | None = None
    """The rows the call asks for, on the scaling curves."""

    def request(self, target: str) -> tuple[bytes, dict[str, str]]:
        if target == "peer":
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": self.peer_tool, "arguments": self.peer_arguments or {}}}
            return orjson.dumps(body), {**MCP_HEADERS}
        body = {"jsonrpc": "2.0", "id": 1, "method": self.method, "params": self.params}
        return orjson.dumps(body), {**MCP_HEADERS, "Authorization": f"Bearer {self.token}",
                                    "X-Bench-Workload": self.name}


HEADLINE = (
    Workload("list_feedback", "retently", ANALYST, "tools/call",
             {"name": "list_feedback", "arguments": {"limit": 50}},
             "/api/v2/feedback?page=1&limit=50&sort=-createdDate", f"api_key={ANALYST}",
             "list_feedback", {"limit": 50, "page": 1, "sort": "-createdDate"}),
    Workload("get_responses", "refiner", REFINER, "tools/call",
             {"name": "get-responses", "arguments": {"project_uuid": PROJECT,
                                                     "page_length": 100}},
             "/v1/responses?page_length=100", f"Bearer {REFINER}",
             "get_responses", {"page_length": 100}),
    Workload("tools_list", "retently", ANALYST, "tools/list", {},
             "", f"api_key={ANALYST}"),
    Workload("write_preview", "retently", WRITER, "tools/call",
             {"name": "tag_feedback", "arguments": {"id": FEEDBACK_ID, "add": ["bench"]}},
             f"/api/v2/feedback/{FEEDBACK_ID}", f"api_key={WRITER}"),
)
"""Measured on every target, in each upstream mode."""


def feedback_rows(rows: int) -> Workload:
    """list_feedback (analyst token: pseudonymisation on) asking for `rows` rows."""
    return Workload(f"list_feedback_rows{rows}", "retently", ANALYST, "tools/call",
                    {"name": "list_feedback", "arguments": {"limit": rows}},
                    f"/api/v2/feedback?page=1&limit={rows}&sort=-createdDate",
                    f"api_key={ANALYST}", rows=rows)


def responses_rows(rows: int) -> Workload:
    """Refiner get-responses asking for `rows` responses (contact data always dropped)."""
    return Workload(f"get_responses_rows{rows}", "refiner", REFINER, "tools/call",
                    {"name": "get-responses", "arguments": {"project_uuid": PROJECT,
                                                            "page_length": rows}},
                    f"/v1/responses?page_length={rows}", f"Bearer {REFINER}", rows=rows)


FEEDBACK_CURVE = tuple(feedback_rows(rows) for rows in (10, 50, 100, 500))
RESPONSES_CURVE = tuple(responses_rows(rows) for rows in (500,))
CATALOG_SERVICE = "catalog"
CATALOG_TOOLS_LIST = Workload("tools_list_catalog", CATALOG_SERVICE, "bench_catalog_caller_token",
                              "tools/list", {}, "", "")
"""tools/list on the synthetic catalog (a passthrough service: any bearer token is taken)."""
RETENTLY_TOOLS_LIST_ALL = Workload("tools_list_admin", "retently", ADMIN, "tools/list", {}, "",
                                   f"api_key={ADMIN}")
"""tools/list of every Retently tool (the admin token has every scope): the catalog's match."""

WORKLOADS = {w.name: w for w in (*HEADLINE, *FEEDBACK_CURVE, *RESPONSES_CURVE,
                                 CATALOG_TOOLS_LIST, RETENTLY_TOOLS_LIST_ALL)}
