"""A closed-loop load generator: N concurrent clients, each sending the next call as soon as the
previous one is answered. Warm-up calls run to the end first and are not counted; the CPU time
of each process group given with --cpu is read from /proc just before and just after the
counted calls. Prints one JSON line of results.

    python -m bench.load --url URL --workload list_feedback --concurrency 50 --calls 3000 \
        --cpu gateway=PGID
    python -m bench.load --serve    # one JSON request per stdin line, one JSON answer per line

`--serve` keeps one load process for a whole benchmark run instead of starting one per point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import aiohttp

from bench.procfs import group_cpu_s
from bench.workloads import WORKLOADS


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run_calls(session: aiohttp.ClientSession, url: str, body: bytes,
                    headers: dict[str, str], concurrency: int, calls: int
                    ) -> tuple[list[float], int]:
    """`calls` calls from `concurrency` clients; the latency of each, and how many failed."""
    latencies: list[float] = []
    failed = 0
    remaining = calls

    async def client() -> None:
        nonlocal remaining, failed
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            ok = True
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    ok = response.status == 200 and b'"isError":true' not in payload and (
                        b'"error":{' not in payload)
            except aiohttp.ClientError:
                ok = False
            latencies.append(time.perf_counter() - started)
            failed += not ok

    async with asyncio.timeout(600):
        await asyncio.gather(*(client() for _ in range(min(concurrency, calls))))
    return latencies, failed


def cpu_now(groups: dict[str, int]) -> dict[str, float]:
    return {name: group_cpu_s(pgid) for name, pgid in groups.items()}


async def drive(url: str, body: bytes, headers: dict[str, str], concurrency: int, calls: int,
                warmup: int, groups: dict[str, int] | None = None) -> dict[str, Any]:
    groups = groups or {}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        if warmup:
            await run_calls(session, url, body, headers, concurrency, warmup)
        cpu_before, client_before = cpu_now(groups), time.process_time()
        started = time.perf_counter()
        latencies, errors = await run_calls(session, url, body, headers, concurrency, calls)
        elapsed = time.perf_counter() - started
        cpu_after, client_after = cpu_now(groups), time.process_time()
    count = len(latencies)
    return {
        "calls": count,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(count / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(statistics.median(latencies) * 1000, 3) if latencies else 0.0,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "cpu_ms_per_call": {name: round((cpu_after[name] - cpu_before[name]) * 1000
                                        / max(1, count), 4) for name in groups},
        "client_cpu_ms_per_call": round((client_after - client_before) * 1000 / max(1, count), 4),
    }


def measure(request: dict[str, Any]) -> dict[str, Any]:
    """One point: {url, workload, target, concurrency, calls, warmup, groups: {name: pgid}}."""
    body, headers = WORKLOADS[request["workload"]].request(request["target"])
    return asyncio.run(drive(request["url"], body, headers, request["concurrency"],
                             request["calls"], request["warmup"], request.get("groups")))


def serve() -> None:
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(measure(json.loads(line))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="closed-loop MCP load generator")
    parser.add_argument("--serve", action="store_true",
                        help="read one JSON request per stdin line (see measure)")
    parser.add_argument("--url")
    parser.add_argument("--workload", choices=sorted(WORKLOADS))
    parser.add_argument("--target", default="gateway", choices=["gateway", "baseline", "peer"])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--cpu", action="append", default=[], metavar="NAME=PGID",
                        help="a process group whose CPU time per call to report (repeatable)")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if not args.url or not args.workload:
        parser.error("--url and --workload are needed (or --serve)")
    groups = {name: int(pgid) for name, _, pgid in (g.partition("=") for g in args.cpu)}
    print(json.dumps(measure({"url": args.url, "workload": args.workload,
                              "target": args.target, "concurrency": args.concurrency,
                              "calls": args.calls, "warmup": args.warmup, "groups": groups})))


if __name__ == "__main__":
    main()
