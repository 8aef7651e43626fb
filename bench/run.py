"""The benchmark: the gateway against a bare aiohttp proxy (baseline) and FastMCP's OpenAPI proxy
(peer), each in its own process in front of the same sandbox upstream, driven by a closed-loop
load generator in yet another process. Targets alternate (A B A B ...) and medians are reported.

    python -m bench.run            # the full benchmark -> bench/results/latest.{json,md}
    python -m bench.run --smoke    # a few hundred calls, no targets (make test runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.workloads import WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER_PYTHON = ROOT / "build" / "peer-venv" / "bin" / "python"
PYTHON = sys.executable
SCALED_POINT = ("list_feedback", 50)
"""Where `serve --workers N` is measured too: throughput under load is the question there."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited at startup")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return  # it answers: good enough for "listening"
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url}: not ready within {seconds:.0f} s")


@contextmanager
def process(command: list[str], ready_url: str, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    started = subprocess.Popen(command, env={**os.environ, **(env or {})},  # noqa: S603
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(ready_url, started)
        yield started
    finally:
        started.terminate()
        started.wait(timeout=15)


def rss_kib(pid: int) -> dict[str, int]:
    """Current and peak resident memory of a process (Linux /proc); for a `serve --workers`
    parent, the sum over its workers (the parent itself only waits)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if children:
        each = [rss_kib(int(child)) for child in children]
        return {key: sum(one[key] for one in each) for key in ("rss_kib", "peak_rss_kib")}
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return {"rss_kib": fields.get("VmRSS", 0), "peak_rss_kib": fields.get("VmHWM", 0)}


def load(url: str, workload: str, target: str, concurrency: int, calls: int,
         warmup: int) -> dict[str, Any]:
    finished = subprocess.run(  # noqa: S603 - our own module
        [PYTHON, "-m", "bench.load", "--url", url, "--workload", workload, "--target", target,
         "--concurrency", str(concurrency), "--calls", str(calls), "--warmup", str(warmup)],
        capture_output=True, text=True, check=True, timeout=900, cwd=ROOT)
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "calls_per_s": round(statistics.median(r["calls_per_s"] for r in runs), 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 3),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
        "errors": sum(r["errors"] for r in runs),
        "runs": len(runs),
    }


def spec_load_ms() -> float:
    code = ("import time;from gateway.spec.loader import load_tree;from gateway.settings import "
            "SHIPPED_SPECS;t=time.perf_counter();load_tree(SHIPPED_SPECS,{});"
            "print((time.perf_counter()-t)*1000)")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,  # noqa: S603
                         check=True, cwd=ROOT).stdout
    return round(float(out.strip()), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few hundred calls, no targets")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--workers", type=int, default=None,
                        help="also measure list_feedback@50 on `serve --workers N` (default: "
                             "one per core, none with --smoke; 0 or 1: skip)")
    args = parser.parse_args()
    if args.workers is None:
        args.workers = 0 if args.smoke else (os.cpu_count() or 2)
    rounds = 1 if args.smoke else args.rounds
    calls = 200 if args.smoke else args.calls
    warmup = 50 if args.smoke else 300

    upstream_port, gateway_port, baseline_port, peer_port, workers_port = (
        free_port() for _ in range(5))
    upstream = f"http://127.0.0.1:{upstream_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    baseline = f"http://127.0.0.1:{baseline_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    env = {"RETENTLY_API_URL": upstream, "REFINER_API_URL": upstream,
           "REFINER_AUTH_URL": upstream, "GATEWAY_ACCESS_LOG": "false",
           "GATEWAY_LOG_LEVEL": "warning", "GATEWAY_LOG_JSON": "true",
           "GATEWAY_MAX_RESULT_BYTES": "400000",
           # write_preview measures what a preview costs, not the per-account preview limit.
           "RETENTLY_PREVIEWS_PER_MINUTE": "1000000"}
    gateway_cli = str(Path(PYTHON).parent / "mcp-gateway")
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "smoke": args.smoke, "spec_load_ms": spec_load_ms(),
                              "workloads": {}, "workers": args.workers}
    scaled = f"gateway x{args.workers} workers"
    peer_available = not args.no_peer and PEER_PYTHON.exists()
    with (process([gateway_cli, "sandbox", "--port", str(upstream_port)],
                  f"{upstream}/api/v2/ping"),
          process([gateway_cli, "serve", "--port", str(gateway_port)],
                  f"{gateway}/healthz", env) as gateway_process):
        report["gateway_idle"] = rss_kib(gateway_process.pid)
        tools_list = ROOT / "build" / "bench-tools-list.json"
        tools_list.parent.mkdir(exist_ok=True)
        body, headers = WORKLOADS["tools_list"].request("gateway")
        request = urllib.request.Request(  # noqa: S310 - loopback only
            f"{gateway}/retently/mcp", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            tools_list.write_bytes(answer.read())
        targets = {"gateway": f"{gateway}/{{service}}/mcp", "baseline": f"{baseline}/{{service}}"}
        with (process([PYTHON, "-m", "bench.baseline", "--port", str(baseline_port),
                       "--upstream", upstream, "--tools-list", str(tools_list)],
                      f"{baseline}/", ) as baseline_process,
              _maybe_peer(peer_available, peer_port, upstream) as peer_process,
              _maybe_workers(args.workers, gateway_cli, workers_port, env) as workers_process):
            pids = {"gateway": gateway_process.pid, "baseline": baseline_process.pid}
            if peer_process is not None:
                targets["peer"] = f"{peer}/mcp"
                pids["peer"] = peer_process.pid
            if workers_process is not None:
                targets[scaled] = f"http://127.0.0.1:{workers_port}/{{service}}/mcp"
                pids[scaled] = workers_process.pid
            for name, workload in WORKLOADS.items():
                for concurrency in (1, 50):
                    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
                    for _ in range(rounds):
                        for target, url in targets.items():
                            if target == "peer" and workload.peer_tool is None:
                                continue
                            if target == scaled and (name, concurrency) != SCALED_POINT:
                                continue  # measured where throughput is the question
                            count = calls if concurrency > 1 else max(100, calls // 8)
                            sends_as = "gateway" if target == scaled else target
                            runs[target].append(load(url.format(service=workload.service),
                                                     name, sends_as, concurrency, count, warmup))
                    summary = {t: {**median_of(r), **rss_kib(pids[t])}
                               for t, r in runs.items() if r}
                    report["workloads"][f"{name}@{concurrency}"] = summary
                    print(f"{name}@{concurrency}: " + ", ".join(
                        f"{t} {s['calls_per_s']}/s p50 {s['p50_ms']}ms" for t, s in
                        summary.items()), flush=True)
        if not args.smoke and not args.no_soak:
            report["soak"] = soak(f"{gateway}/retently/mcp", gateway_process.pid)
    write(report, smoke=args.smoke)
    return 0



@contextmanager
def _maybe_workers(workers: int, gateway_cli: str, port: int, env: dict[str, str]
                   ) -> Iterator[subprocess.Popen[bytes] | None]:
    """A second gateway, `serve --workers N`, measured at SCALED_POINT only."""
    if workers <= 1:
        yield None
        return
    with process([gateway_cli, "serve", "--port", str(port), "--workers", str(workers)],
                 f"http://127.0.0.1:{port}/readyz", env) as scaled:
        yield scaled


@contextmanager
def _maybe_peer(available: bool, port: int, upstream: str
                ) -> Iterator[subprocess.Popen[bytes] | None]:
    if not available:
        yield None
        return
    with process([str(PEER_PYTHON), str(ROOT / "bench" / "peer.py"), "--port", str(port),
                  "--upstream", upstream], f"http://127.0.0.1:{port}/mcp") as peer:
        yield peer


def soak(url: str, pid: int) -> dict[str, Any]:
    """RSS after 10,000 and after 100,000 calls of list_feedback at 50 concurrent."""
    load(url, "list_feedback", "gateway", 50, 10_000, 0)
    after_10k = rss_kib(pid)
    load(url, "list_feedback", "gateway", 50, 90_000, 0)
    after_100k = rss_kib(pid)
    growth = (after_100k["rss_kib"] - after_10k["rss_kib"]) / max(1, after_10k["rss_kib"])
    return {"after_10k": after_10k, "after_100k": after_100k,
            "growth_pct": round(growth * 100, 1)}


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def write(report: dict[str, Any], *, smoke: bool) -> None:
    lines = [f"# Benchmark ({report['when']}{', smoke' if smoke else ''})", "",
             f"Spec load (all shipped specs): {report['spec_load_ms']} ms. "
             f"Gateway idle RSS: {report['gateway_idle']['rss_kib'] // 1024} MiB. "
             "`gateway` is `mcp-gateway serve` (one process); `gateway xN workers` is "
             "`serve --workers N` (RSS summed over its workers).", "",
             "| workload | target | calls/s | p50 ms | p99 ms | errors | peak RSS MiB | "
             "vs baseline | gateway / peer |", "|---|---|---|---|---|---|---|---|---|"]
    for key, targets in report["workloads"].items():
        base = targets.get("baseline", {}).get("calls_per_s", 0.0)
        for target, s in targets.items():
            versus = ratio(s["calls_per_s"], base) if target != "baseline" else None
            over_peer = (ratio(s["calls_per_s"], targets["peer"]["calls_per_s"])
                         if target.startswith("gateway") and "peer" in targets else None)
            lines.append(f"| {key} | {target} | {s['calls_per_s']} | {s['p50_ms']} | "
                         f"{s['p99_ms']} | {s['errors']} | {s['peak_rss_kib'] // 1024} | "
                         f"{versus if versus is not None else '-'} | "
                         f"{over_peer if over_peer is not None else '-'} |")
    if "soak" in report:
        soaked = report["soak"]
        lines += ["", f"Soak: RSS {soaked['after_10k']['rss_kib'] // 1024} MiB after 10k calls, "
                      f"{soaked['after_100k']['rss_kib'] // 1024} MiB after 100k "
                      f"({soaked['growth_pct']}% growth)."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "smoke" if smoke else "latest"
    (RESULTS / f"{stem}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
