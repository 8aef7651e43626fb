"""Catalog size: a 1,000-tool spec tree made the way an operator would make one, by running
`mcp-gateway import-openapi` on an OpenAPI 3 document, here a synthetic one with 1,000
operations (200 resources, five operations each, with path, query and body parameters and
response schemas). The benchmark measures how long the tree takes to load in a fresh process
and what `tools/list` costs on a gateway serving it, against the 53-tool Retently service.

    python -m bench.catalog OUT_DIR [--operations 1000]   # write the tree, print its path
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.points import Case, Plan, Target, measure_cases, paired
from bench.targets import PYTHON, ROOT, Loader, post_json, spec_load_ms
from bench.workloads import (
    CATALOG_SERVICE,
    CATALOG_TOOLS_LIST,
    RETENTLY_TOOLS_LIST_ALL,
    Workload,
)

OPERATIONS_PER_RESOURCE = 5


def _item_schema(kind: str) -> dict[str, Any]:
    return {"type": "object", "required": ["id", "name"], "properties": {
        "id": {"type": "string", "description": f"The {kind}'s id"},
        "name": {"type": "string", "maxLength": 200, "description": f"The {kind}'s name"},
        "status": {"type": "string", "enum": ["active", "paused", "archived"]},
        "owner_email": {"type": "string", "format": "email"},
        "created_at": {"type": "string", "format": "date-time"},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "labels": {"type": "array", "items": {"type": "string"}, "maxItems": 20}}}


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}


def _resource_paths(index: int) -> dict[str, Any]:
    """Five operations on one resource: list, create, get, update, delete."""
    kind = f"widget{index:03d}"
    tag = f"Group{index % 20:02d}"
    item = _item_schema(kind)
    ident = {"name": "id", "in": "path", "required": True, "schema": {"type": "string",
             "pattern": "^[a-z0-9]{8,32}$"}, "description": f"The {kind}'s id"}
    paging = [
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1},
         "description": "Page number, from 1"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                    "maximum": 100}, "description": "Per page"},
        {"name": "status", "in": "query", "schema": item["properties"]["status"],
         "description": f"Only {kind}s in this status"},
        {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200},
         "description": "Words the name contains"}]
    body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["name"],
        "properties": {k: v for k, v in item["properties"].items() if k != "id"}}}}}

    def operation(verb: str, summary: str, **extra: Any) -> dict[str, Any]:
        return {"operationId": f"{verb}{kind.capitalize()}", "tags": [tag], "summary": summary,
                "description": f"{summary}. Part of the synthetic catalog the benchmark "
                               f"imports; {kind} is resource {index} of 200.", **extra}

    return {
        f"/{kind}s": {
            "get": operation("list", f"List {kind}s", parameters=paging,
                             responses=_ok({"type": "object", "properties": {
                                 "items": {"type": "array", "items": item},
                                 "total": {"type": "integer"}}})),
            "post": operation("create", f"Create a {kind}", requestBody=body,
                              responses=_ok(item))},
        f"/{kind}s/{{id}}": {
            "parameters": [ident],
            "get": operation("get", f"Get one {kind}", responses=_ok(item)),
            "patch": operation("update", f"Change a {kind}", requestBody=body,
                               responses=_ok(item)),
            "delete": operation("delete", f"Delete a {kind}",
                                responses={"204": {"description": "Deleted"}})},
    }


def synthetic_openapi(operations: int = 1000) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for index in range(operations // OPERATIONS_PER_RESOURCE):
        paths.update(_resource_paths(index))
    return {"openapi": "3.0.3",
            "info": {"title": "Synthetic catalog", "version": "1.0.0",
                     "description": f"{operations} operations for the benchmark's catalog size"},
            "servers": [{"url": "http://127.0.0.1:9/api"}],
            "security": [{"bearer": []}],
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "paths": paths}


def build_tree(out: Path, operations: int = 1000) -> dict[str, Any]:
    """Write the document and import it into `out/tree/catalog`; the tree, the tool count and
    how long the import took."""
    out.mkdir(parents=True, exist_ok=True)
    document = out / "openapi.json"
    document.write_text(json.dumps(synthetic_openapi(operations)))
    tree = out / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    started = time.perf_counter()
    subprocess.run([PYTHON, "-m", "gateway", "import-openapi", "--service",  # noqa: S603
                    CATALOG_SERVICE, "--out", str(tree / CATALOG_SERVICE), str(document)],
                   check=True, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return {"tree": tree, "import_s": round(seconds, 2), "operations": operations}


def serving_tree(catalog_tree: Path, out: Path) -> Path:
    """A tree serving the catalog next to a copy of the shipped Retently service, so one
    gateway process answers tools/list for both (the same process, the same warm state)."""
    both = out / "serve"
    shutil.rmtree(both, ignore_errors=True)
    shutil.copytree(catalog_tree / CATALOG_SERVICE, both / CATALOG_SERVICE)
    shutil.copytree(ROOT / "tool_specs" / "retently", both / "retently")
    return both


def tools_listed(gateway: Target, workload: Workload) -> tuple[int, int]:
    """The tools the workload's caller lists (every page, following nextCursor), and how many
    the first answer (the one measured) holds."""
    pages: list[int] = []
    cursor = None
    while not pages or cursor is not None:
        asked = workload if cursor is None else replace(workload, params={"cursor": cursor})
        body, headers = asked.request("gateway")
        result = post_json(gateway.url.format(service=workload.service), body,
                           headers).get("result") or {}
        pages.append(len(result.get("tools") or []))
        cursor = result.get("nextCursor")
    return sum(pages), pages[0]


def measure_catalog(loader: Loader, gateway: Target, built: dict[str, Any], plan: Plan,
                    concurrencies: tuple[int, ...] = (1, 50)) -> dict[str, Any]:
    """Load time of the imported tree, and tools/list on it against Retently's (every tool:
    the admin token), both served by `gateway` and taking turns. What is measured is the first
    answer: a page of at most GATEWAY_LIST_PAGE_SIZE tools."""
    shipped = RETENTLY_TOOLS_LIST_ALL
    listed = {"catalog": tools_listed(gateway, CATALOG_TOOLS_LIST),
              "retently": tools_listed(gateway, shipped)}
    report: dict[str, Any] = {
        "operations": built["operations"], "import_s": built["import_s"],
        "load_ms": spec_load_ms(built["tree"]),
        "tools": {service: every for service, (every, _) in listed.items()},
        "tools_per_answer": {service: first for service, (_, first) in listed.items()},
        "tools_list": {}}
    for concurrency in concurrencies:
        measured: dict[str, Any] = measure_cases(
            loader, [Case("catalog", gateway, CATALOG_TOOLS_LIST),
                     Case("retently", gateway, shipped)], concurrency, plan, None)
        compared = paired(measured["catalog"]["cpu_ms_per_call_runs"],
                          measured["retently"]["cpu_ms_per_call_runs"])
        measured["cpu_catalog_vs_retently"] = compared and compared["median"]
        report["tools_list"][f"c{concurrency}"] = measured
        print(f"catalog tools/list@{concurrency}: {report['tools']['catalog']} tools "
              f"{measured['catalog']['cpu_ms_per_call']} ms, {report['tools']['retently']} "
              f"tools {measured['retently']['cpu_ms_per_call']} ms", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--operations", type=int, default=1000)
    args = parser.parse_args()
    built = build_tree(args.out, args.operations)
    print(f"{built['tree']} ({built['import_s']} s)")


if __name__ == "__main__":
    main()
