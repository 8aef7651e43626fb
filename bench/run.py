"""The benchmark: the gateway against a bare aiohttp proxy (baseline) and FastMCP's OpenAPI proxy
(peer), each in its own process group in front of the same upstream, driven by a closed-loop
load generator in yet another process. The headline is CPU time per call of each target's
process group. Targets alternate (A B A B ...) and medians are reported with their spread.

Upstreams (--upstream): `fast`, a static upstream answering from memory (bench/fast_upstream.py),
so the upstream is never the bottleneck; `sandbox`, the sandbox itself. Also: CPU per call and
per row against rows (bench/scaling.py), a 1,000-tool catalog (bench/catalog.py), and RSS over
100,000 calls.

    python -m bench.run            # the full benchmark -> bench/results/latest.{json,md}
    python -m bench.run --smoke    # a few hundred calls per target (make test runs this)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import catalog, scaling
from bench.points import Plan, Target, measure_point
from bench.procfs import machine_state, machine_ticks, rss_kib
from bench.report import write
from bench.stack import ModeStack, start_stack
from bench.targets import Fleet, Loader, Placement, free_port, spec_load_ms
from bench.workloads import HEADLINE

__all__ = ["free_port", "main"]
SCALED_POINT = ("list_feedback", 50)
"""Where `serve --workers N` is measured too: throughput under load is the question there."""
SOAK_FLAT = 0.05
"""RSS after 100,000 calls within 5% of RSS after 10,000: flat."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="a few dozen calls per point, one round, the fast upstream only, "
                             "a 200-tool catalog, no soak")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of every point; five, so that a median of round-by-round "
                             "ratios stands on more than the machine's state in one round")
    parser.add_argument("--calls", type=int, default=1000,
                        help="counted calls per run at 50 concurrent (at 1: an eighth)")
    parser.add_argument("--upstream", choices=["fast", "sandbox", "both"], default=None,
                        help="which upstream the targets stand in front of (default: both, "
                             "fast with --smoke)")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--soak-calls", type=int, default=100_000,
                        help="calls of the RSS soak (RSS is compared after a tenth of them)")
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--no-catalog", action="store_true")
    parser.add_argument("--catalog-operations", type=int, default=None,
                        help="operations of the synthetic catalog (default 1000, 200 with "
                             "--smoke)")
    parser.add_argument("--pin", action="store_true",
                        help="the measured targets on a core of their own, the load generator "
                             "and the upstreams on the others (see bench/README.md: on the "
                             "2-core machine it did not narrow the spread)")
    parser.add_argument("--workers", type=int, default=None,
                        help="also measure list_feedback@50 on `serve --workers N` (default: "
                             "one per core; 0 or 1: skip)")
    args = parser.parse_args()
    if args.workers is None:
        args.workers = os.cpu_count() or 2
    if args.upstream is None:
        args.upstream = "fast" if args.smoke else "both"
    if args.catalog_operations is None:
        args.catalog_operations = 200 if args.smoke else 1000
    return args


def plans(args: argparse.Namespace) -> tuple[Plan, Plan]:
    """The plan of the headline points and the one of the curves and the catalog."""
    if args.smoke:
        return Plan(1, 100, 10, floor=50), Plan(1, 25, 5, floor=25)
    headline = Plan(args.rounds, args.calls, 300)
    return headline, Plan(args.rounds, args.calls // 4, 100, floor=args.calls // 4)


def measure_mode(loader: Loader, stack: ModeStack, plan: Plan, workers: int) -> dict[str, Any]:
    """Every headline workload at 1 and 50 concurrent on every target of one upstream mode."""
    scaled = f"gateway x{workers} workers"
    workloads: dict[str, Any] = {}
    for workload in HEADLINE:
        for concurrency in (1, 50):
            targets = [t for t in stack.targets if
                       (t.name != "peer" or workload.peer_tool is not None)
                       and (t.name != scaled or (workload.name, concurrency) == SCALED_POINT)]
            summary = measure_point(loader, targets, workload, concurrency, plan,
                                    stack.upstream_pgid)
            workloads[f"{workload.name}@{concurrency}"] = summary
            print(f"{stack.mode} {workload.name}@{concurrency}: " + ", ".join(
                f"{t} {s['calls_per_s']}/s p50 {s['p50_ms']}ms cpu {s['cpu_ms_per_call']}ms"
                for t, s in summary.items()), flush=True)
    return {"workloads": workloads, "upstream": stack.upstream_name,
            "upstream_stats": stack.upstream_stats()}


def soak(loader: Loader, gateway: Target, first: int = 10_000, total: int = 100_000
         ) -> dict[str, Any]:
    """RSS after `first` and after `total` calls of list_feedback at 50 concurrent."""
    url = gateway.url.format(service="retently")
    loader.measure(url=url, workload="list_feedback", target="gateway", concurrency=50,
                   calls=first, warmup=0, groups={})
    after_first = rss_kib(gateway.pgid)
    loader.measure(url=url, workload="list_feedback", target="gateway", concurrency=50,
                   calls=total - first, warmup=0, groups={})
    after_total = rss_kib(gateway.pgid)
    growth = (after_total["rss_kib"] - after_first["rss_kib"]) / max(1, after_first["rss_kib"])
    return {"calls": [first, total], "after_10k": after_first, "after_100k": after_total,
            "growth_pct": round(growth * 100, 1), "flat_within_5pct": abs(growth) <= SOAK_FLAT}


def measure_all(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    headline_plan, curve_plan = plans(args)
    modes = ["fast", "sandbox"] if args.upstream == "both" else [args.upstream]
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "smoke": args.smoke,
        "workers": args.workers, "upstreams": modes,
        "plan": {"headline": vars(headline_plan), "curves": vars(curve_plan)}, "modes": {},
        "seconds": {}}
    clock = Clock(report["seconds"])
    # The machine's state is part of a result: the same code measured a fifth apart in ratio
    # on a quiet and on a busy machine (bench/README.md, "Latest measurement").
    report["machine"] = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)}
    ticks_before = machine_ticks()
    placement = Placement.split() if args.pin else Placement()
    report["placement"] = {"targets": sorted(placement.targets or ()),
                           "rest": sorted(placement.rest or ())}
    with Fleet() as fleet, Loader(placement.rest) as loader:
        stack = start_stack(fleet, args, modes, scratch, placement)
        report["gateway_idle"] = stack.idle_rss
        report["spec_load_ms"] = spec_load_ms()
        clock.lap("start")
        for mode in modes:
            report["modes"][mode] = measure_mode(loader, stack.mode(mode), headline_plan,
                                                 args.workers)
            clock.lap(mode)
        if stack.curve_gateway is not None:
            report["curves"] = scaling.measure_curves(
                loader, stack.curve_gateway, stack.curve_baseline(), curve_plan,
                stack.fast_pgid())
            report["curves"]["upstream_stats"] = stack.fast_stats()
            clock.lap("curves")
        if stack.catalog_gateway is not None:
            report["catalog"] = catalog.measure_catalog(
                loader, stack.catalog_gateway, stack.catalog_built, headline_plan)
            clock.lap("catalog")
        if not args.smoke and not args.no_soak:
            report["soak"] = soak(loader, stack.soak_gateway(), args.soak_calls // 10,
                                  args.soak_calls)
            clock.lap("soak")
    report["machine"].update(machine_state(ticks_before, machine_ticks()))
    return report


@dataclass
class Clock:
    """Seconds each part of the run took, into the report."""

    laps: dict[str, float]
    last: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self.last, 1)
        self.last = now


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    args = parse_args()
    # Stopped with SIGTERM (a `kill`, a job's time limit), the run unwinds as on Ctrl-C, so the
    # fleet stops every server it started: each is in a session of its own and would outlive it.
    signal.signal(signal.SIGTERM, _stopped)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        report = measure_all(args, Path(scratch))
    write(report, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
