"""A closed-loop load generator: N concurrent clients, each sending the next call as soon as the
previous one is answered. Warm-up calls are not counted. Prints one JSON line of results.

    python -m bench.load --url URL --workload list_feedback --concurrency 50 --calls 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp

from bench.workloads import WORKLOADS


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def drive(url: str, body: bytes, headers: dict[str, str], concurrency: int, calls: int,
                warmup: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    remaining = warmup + calls
    counted_from = [0.0]
    lock = asyncio.Lock()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal remaining, errors
            while True:
                async with lock:
                    if remaining <= 0:
                        return
                    remaining -= 1
                    number = warmup + calls - remaining
                    if number == warmup + 1:
                        counted_from[0] = time.perf_counter()
                started = time.perf_counter()
                ok = True
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        payload = await response.read()
                        ok = response.status == 200 and b'"isError":true' not in payload and (
                            b'"error":{' not in payload)
                except aiohttp.ClientError:
                    ok = False
                if number > warmup:
                    latencies.append(time.perf_counter() - started)
                    if not ok:
                        errors += 1

        async with asyncio.timeout(600):
            await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - counted_from[0]
    return {
        "calls": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(statistics.median(latencies) * 1000, 3) if latencies else 0.0,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="closed-loop MCP load generator")
    parser.add_argument("--url", required=True)
    parser.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    parser.add_argument("--target", default="gateway", choices=["gateway", "baseline", "peer"])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    body, headers = WORKLOADS[args.workload].request(args.target)
    result = asyncio.run(drive(args.url, body, headers, args.concurrency, args.calls,
                               args.warmup))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
