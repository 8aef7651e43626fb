"""One measured point: a workload at a concurrency, on each target in turn (A B A B ...) for a
number of rounds; medians with their spread (min-max) over the rounds, and the CPU time per
call of each target's process group and of the upstream's."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.procfs import rss_kib
from bench.targets import Loader
from bench.workloads import Workload


@dataclass(frozen=True)
class Plan:
    rounds: int
    calls: int
    """Counted calls per run at concurrency > 1."""
    warmup: int
    floor: int = 100
    """Counted calls per run at concurrency 1: calls / 8, at least this."""

    def count(self, concurrency: int) -> int:
        return self.calls if concurrency > 1 else max(self.floor, self.calls // 8)


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    """With {service} where the workload's service goes."""
    pgid: int
    sends_as: str = "gateway"
    """How the load generator phrases requests for it: gateway, baseline or peer."""


def _spread(values: Iterable[float], digits: int) -> dict[str, Any]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), digits),
            "range": [round(ordered[0], digits), round(ordered[-1], digits)]}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds, each headline figure with its min-max beside it."""
    calls_per_s = _spread((r["calls_per_s"] for r in runs), 1)
    p50 = _spread((r["p50_ms"] for r in runs), 3)
    cpu = _spread((r["cpu_ms_per_call"]["target"] for r in runs), 4)
    upstream = [r["cpu_ms_per_call"]["upstream"] for r in runs
                if "upstream" in r["cpu_ms_per_call"]]
    return {
        "calls_per_s": calls_per_s["median"], "calls_per_s_range": calls_per_s["range"],
        "p50_ms": p50["median"], "p50_ms_range": p50["range"],
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
        "cpu_ms_per_call": cpu["median"], "cpu_ms_per_call_range": cpu["range"],
        "cpu_ms_per_call_runs": [r["cpu_ms_per_call"]["target"] for r in runs],
        "calls_per_s_runs": [r["calls_per_s"] for r in runs],
        "upstream_cpu_ms_per_call": round(statistics.median(upstream), 4) if upstream else None,
        "client_cpu_ms_per_call": round(statistics.median(
            r["client_cpu_ms_per_call"] for r in runs), 4),
        "errors": sum(r["errors"] for r in runs),
        "calls": sum(r["calls"] for r in runs),
        "runs": len(runs),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


@dataclass(frozen=True)
class Case:
    label: str
    target: Target
    workload: Workload


def measure_cases(loader: Loader, cases: list[Case], concurrency: int, plan: Plan,
                  upstream_pgid: int | None) -> dict[str, dict[str, Any]]:
    """Each case's summary, the cases taking turns in every round, with RSS after them."""
    runs: dict[str, list[dict[str, Any]]] = {case.label: [] for case in cases}
    for _ in range(plan.rounds):
        for case in cases:
            groups = {"target": case.target.pgid}
            if upstream_pgid is not None:
                groups["upstream"] = upstream_pgid
            runs[case.label].append(loader.measure(
                url=case.target.url.format(service=case.workload.service),
                workload=case.workload.name, target=case.target.sends_as,
                concurrency=concurrency, calls=plan.count(concurrency), warmup=plan.warmup,
                groups=groups))
    return {case.label: {**summarize(runs[case.label]), **rss_kib(case.target.pgid)}
            for case in cases}


def paired(runs: list[float], baseline_runs: list[float]) -> dict[str, Any] | None:
    """The median, and the min-max, of a target's figure over the baseline's in the same round.

    Each round runs the targets one right after the other, so a pair shares the machine's
    state, which on a shared 2-core machine drifts by half or more over seconds: a ratio of
    the medians can divide a fast round's figure by a slow one's."""
    ratios = [run / base for run, base in zip(runs, baseline_runs, strict=True) if base]
    if not ratios:
        return None
    spread = _spread(ratios, 2)
    return {"median": spread["median"], "range": spread["range"]}


def against_baseline(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each target's CPU per call and calls/s as multiples of the baseline's in the same
    round (see `paired`), where a baseline was measured."""
    base = summary.get("baseline")
    for name, measured in summary.items():
        cpu = calls = None
        if base is not None and name != "baseline":
            cpu = paired(measured["cpu_ms_per_call_runs"], base["cpu_ms_per_call_runs"])
            calls = paired(measured["calls_per_s_runs"], base["calls_per_s_runs"])
        measured["cpu_vs_baseline"] = cpu and cpu["median"]
        measured["cpu_vs_baseline_range"] = cpu and cpu["range"]
        measured["calls_per_s_vs_baseline"] = calls and calls["median"]
        measured["calls_per_s_vs_baseline_range"] = calls and calls["range"]
    return summary


def measure_point(loader: Loader, targets: list[Target], workload: Workload, concurrency: int,
                  plan: Plan, upstream_pgid: int | None) -> dict[str, dict[str, Any]]:
    """Each target's summary for one point, against the baseline's."""
    return against_baseline(measure_cases(
        loader, [Case(t.name, t, workload) for t in targets], concurrency, plan, upstream_pgid))
