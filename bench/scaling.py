"""Scaling with rows: CPU per call and per row of list_feedback (analyst token, so
pseudonymisation is on) at 10, 50, 100 and 500 rows, and of Refiner get-responses at 500,
on the fast upstream (which fills a page up to the rows asked for: the sandbox's demo account
has 350 feedback rows).

The shipped list_feedback takes at most 100 rows and Retently's results are bounded at
120,000 bytes, so the curve runs on a copy of the shipped tree whose only changes raise those
bounds (limit up to 500, 500 items, 4 MB; Refiner's bytes bound likewise): every point then
returns every row it asked for, and the probe before each point checks that it does.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.points import Case, Plan, Target, against_baseline, measure_cases
from bench.targets import ROOT, Loader, post_json
from bench.workloads import FEEDBACK_CURVE, RESPONSES_CURVE, Workload

CURVE_CONCURRENCY = 1
"""One call at a time: CPU per call without the batching that concurrency brings."""
PATCHES = {
    "retently/feedback.yaml": [
        ("limit: {type: integer, minimum: 1, maximum: 100, default: 20, "
         "description: 'Rows per page'}",
         "limit: {type: integer, minimum: 1, maximum: 500, default: 20, "
         "description: 'Rows per page'}"),
        ("budget: {max_items: 100}", "budget: {max_items: 500}"),  # list_feedback's: the first
    ],
    "retently/service.yaml": [("budget: {max_items: 100, max_bytes: 120000}",
                               "budget: {max_items: 500, max_bytes: 4000000}")],
    "refiner/service.yaml": [("budget: {max_items: 500, max_bytes: 400000}",
                              "budget: {max_items: 500, max_bytes: 4000000}")],
}


def curve_tree(out: Path) -> Path:
    """Retently and Refiner as shipped, with the bounds above raised."""
    tree = out / "curve-tree"
    shutil.rmtree(tree, ignore_errors=True)
    for service in ("retently", "refiner"):
        shutil.copytree(ROOT / "tool_specs" / service, tree / service)
    for name, changes in PATCHES.items():
        path = tree / name
        text = path.read_text()
        for old, new in changes:
            if old not in text:
                raise SystemExit(f"tool_specs/{name} no longer has {old!r}: update "
                                 "bench/scaling.py PATCHES")
            text = text.replace(old, new, 1)
        path.write_text(text)
    return tree


def rows_returned(gateway: Target, workload: Workload) -> int:
    """How many rows the gateway's answer holds (one call, outside the measurement)."""
    body, headers = workload.request("gateway")
    answer = post_json(gateway.url.format(service=workload.service), body, headers)
    result = answer.get("result") or {}
    if result.get("isError"):
        raise SystemExit(f"{workload.name}: the gateway refused: {result}")
    items = (result.get("structuredContent") or {}).get("items")
    return len(items) if isinstance(items, list) else 0


def linear_fit(points: list[tuple[int, float]]) -> dict[str, Any]:
    """Least squares cpu = fixed + per_row * rows; the largest distance of a point from the
    line, as a share of the line's value there (a step shows as a large one)."""
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    fixed = mean_y - slope * mean_x
    worst = max(abs(y - (fixed + slope * x)) / max(1e-9, fixed + slope * x) for x, y in points)
    return {"fixed_ms": round(fixed, 4), "us_per_row": round(slope * 1000, 3),
            "worst_deviation_pct": round(worst * 100, 1)}


def _points(loader: Loader, targets: list[Target], workloads: tuple[Workload, ...],
            plan: Plan, upstream_pgid: int) -> list[dict[str, Any]]:
    """Every point of a curve, measured together: each round runs every point on every target
    in turn, so the machine's drift between rounds moves all the points alike (measured one
    after another, a point taken while the machine was fast sat far off the line)."""
    returned = {w.name: rows_returned(targets[0], w) for w in workloads}
    measured = measure_cases(loader, [Case(f"{w.name} {t.name}", t, w)
                                      for w in workloads for t in targets],
                             CURVE_CONCURRENCY, plan, upstream_pgid)
    points = []
    for workload in workloads:
        assert workload.rows is not None
        by_target = against_baseline({t.name: measured[f"{workload.name} {t.name}"]
                                      for t in targets})
        rows = returned[workload.name]
        points.append({"rows": workload.rows, "rows_returned": rows, "targets": by_target,
                       "cpu_us_per_row": {name: round(m["cpu_ms_per_call"] * 1000
                                                      / max(1, rows), 3)
                                          for name, m in by_target.items()}})
    return points


def measure_curves(loader: Loader, gateway: Target, baseline: Target, plan: Plan,
                   upstream_pgid: int) -> dict[str, Any]:
    targets = [gateway, baseline]
    curves: dict[str, Any] = {"concurrency": CURVE_CONCURRENCY}
    for name, workloads in (("list_feedback", FEEDBACK_CURVE),
                            ("get_responses", RESPONSES_CURVE)):
        points = _points(loader, targets, workloads, plan, upstream_pgid)
        curve: dict[str, Any] = {"points": points}
        if len(points) > 1:
            curve["fit"] = linear_fit([(p["rows_returned"],
                                        p["targets"]["gateway"]["cpu_ms_per_call"])
                                       for p in points])
            curve["marginal_us_per_row"] = [
                round((b["targets"]["gateway"]["cpu_ms_per_call"]
                       - a["targets"]["gateway"]["cpu_ms_per_call"]) * 1000
                      / max(1, b["rows_returned"] - a["rows_returned"]), 3)
                for a, b in zip(points, points[1:], strict=False)]
        curves[name] = curve
        print(f"rows {name}: " + ", ".join(
            f"{p['rows_returned']} rows {p['targets']['gateway']['cpu_ms_per_call']} ms"
            for p in points), flush=True)
    return curves
