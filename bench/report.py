"""bench/results/{latest,smoke}.{json,md}: the report as JSON, and as Markdown tables (the
headline first: calls/s at 50 concurrent, p50 at 1, and CPU per call of each target in each
upstream mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.points import ratio

RESULTS = Path(__file__).resolve().parent / "results"
CATALOG_LOAD_TARGET_MS = 2000
CATALOG_LIST_TARGET = 2.0
UPSTREAMS = {"fast": "`fast` answers from memory (bench/fast_upstream.py)",
             "sandbox": "`sandbox` is the sandbox itself"}


def fig(measured: dict[str, Any] | None, key: str) -> str:
    """A median with its spread over rounds beside it, when there was one."""
    if not measured or measured.get(key) is None:
        return "-"
    value, spread = measured[key], measured.get(f"{key}_range")
    if spread and spread[0] != spread[1]:
        return f"{value} ({spread[0]}-{spread[1]})"
    return str(value)


def dash(value: Any) -> str:
    return "-" if value is None else str(value)


def preamble(report: dict[str, Any]) -> list[str]:
    plan = report["plan"]["headline"]
    return [
        f"# Benchmark ({report['when']}{', smoke' if report['smoke'] else ''})", "",
        f"Spec load (all shipped specs): {report['spec_load_ms']} ms. Gateway idle RSS: "
        f"{report['gateway_idle']['rss_kib'] // 1024} MiB. Upstreams: "
        + "; ".join(UPSTREAMS[mode] for mode in report["upstreams"]) + ". CPU ms/call: "
        "the scheduler's CPU time (nanoseconds, /proc/<pid>/task/<tid>/schedstat) of the "
        "target's whole process group (workers included) over the counted calls. "
        f"Medians over {plan['rounds']} round(s), min-max in brackets; {plan['calls']} calls "
        f"per run at 50 concurrent, {max(plan['floor'], plan['calls'] // 8)} at 1. A figure "
        "'vs baseline' is the median of each round's ratio (the targets run one right after "
        "the other within a round, so each ratio compares runs on the machine in one state).",
        "", machine(report["machine"]), ""]


def machine(state: dict[str, Any]) -> str:
    """The machine the run had: how busy it was before, and what the host took during it."""
    return (f"Machine: {state['cpus']} CPUs; load average {state['load_before']} (1 min) when "
            f"the run began; during the run {state['idle_pct']}% of the CPU time idle and "
            f"{state['steal_pct']}% taken by the host for other machines (steal).")


def headline(report: dict[str, Any]) -> list[str]:
    lines = ["## Headline", "",
             "| workload | upstream | target | calls/s c=50 | p50 ms c=1 | CPU ms/call c=1 | "
             "CPU ms/call c=50 | CPU vs baseline c=1 | CPU vs baseline c=50 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode, measured in report["modes"].items():
        points = measured["workloads"]
        for name in dict.fromkeys(key.partition("@")[0] for key in points):
            one, fifty = points.get(f"{name}@1", {}), points.get(f"{name}@50", {})
            for target in dict.fromkeys([*one, *fifty]):
                at1, at50 = one.get(target), fifty.get(target)
                lines.append(
                    f"| {name} | {mode} | {target} | {fig(at50, 'calls_per_s')} | "
                    f"{fig(at1, 'p50_ms')} | {fig(at1, 'cpu_ms_per_call')} | "
                    f"{fig(at50, 'cpu_ms_per_call')} | "
                    f"{fig(at1, 'cpu_vs_baseline')} | {fig(at50, 'cpu_vs_baseline')} |")
    return lines


def every_point(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Every point"]
    for mode, measured in report["modes"].items():
        lines += ["", f"### {mode} upstream", "",
                  "| point | target | calls/s | p50 ms | p99 ms | errors | CPU ms/call | "
                  "CPU vs baseline | upstream CPU ms/call | peak RSS MiB | calls/s vs "
                  "baseline | gateway / peer |", "|---" * 12 + "|"]
        for key, targets in measured["workloads"].items():
            for target, s in targets.items():
                over_peer = (ratio(s["calls_per_s"], targets["peer"]["calls_per_s"])
                             if target.startswith("gateway") and "peer" in targets else None)
                lines.append(
                    f"| {key} | {target} | {fig(s, 'calls_per_s')} | "
                    f"{fig(s, 'p50_ms')} | {s['p99_ms']} | {s['errors']} | "
                    f"{fig(s, 'cpu_ms_per_call')} | {fig(s, 'cpu_vs_baseline')} | "
                    f"{dash(s['upstream_cpu_ms_per_call'])} | {s['peak_rss_kib'] // 1024} | "
                    f"{fig(s, 'calls_per_s_vs_baseline')}"
                    f" | {dash(over_peer)} |")
        stats = measured.get("upstream_stats")
        if stats:
            lines += ["", f"The fast upstream answered {stats['hits']} requests from memory; "
                          f"{stats['captured']} were captured from the sandbox ({stats['keys']} "
                          f"distinct requests, {stats['padded']} filled up with rows) and "
                          f"{stats['passed']} passed through (token introspection)."]
    return lines


def curves(report: dict[str, Any]) -> list[str]:
    if "curves" not in report:
        return []
    measured = report["curves"]
    lines = ["", f"## CPU against rows (concurrency {measured['concurrency']}, fast upstream)",
             "", "| workload | rows | rows returned | gateway CPU ms/call | gateway us/row | "
             "baseline CPU ms/call | baseline us/row | gateway / baseline |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("list_feedback", "get_responses"):
        for point in measured[name]["points"]:
            gateway, baseline = point["targets"]["gateway"], point["targets"]["baseline"]
            lines.append(
                f"| {name} | {point['rows']} | {point['rows_returned']} | "
                f"{fig(gateway, 'cpu_ms_per_call')} | {point['cpu_us_per_row']['gateway']} | "
                f"{fig(baseline, 'cpu_ms_per_call')} | {point['cpu_us_per_row']['baseline']} | "
                f"{fig(gateway, 'cpu_vs_baseline')} |")
    fit = measured["list_feedback"].get("fit")
    if fit:
        lines += ["", f"list_feedback, least squares over the points: {fit['fixed_ms']} ms + "
                      f"{fit['us_per_row']} us per row; the point farthest from the line is "
                      f"{fit['worst_deviation_pct']}% off it. Marginal CPU per row between "
                      "consecutive points (us): "
                      + ", ".join(map(str, measured["list_feedback"]["marginal_us_per_row"]))
                      + ". A cost linear in rows, with no step, shows as similar marginal costs "
                      "and no point far off the line."]
    stats = measured.get("upstream_stats")
    if stats:
        lines += ["", f"By the end of the curves the fast upstream had filled {stats['padded']} "
                      "page(s) up to the rows asked for (the sandbox has fewer), and answered "
                      f"{stats['hits']} requests from memory in all."]
    return lines


def catalog(report: dict[str, Any]) -> list[str]:
    if "catalog" not in report:
        return []
    measured = report["catalog"]
    tools = measured["tools"]
    lines = ["", "## Catalog size", "",
             f"`mcp-gateway import-openapi` on a synthetic OpenAPI 3 document of "
             f"{measured['operations']} operations: {measured['import_s']} s (while the "
             "servers were starting). The tree "
             f"({tools['catalog']} tools) loads in {measured['load_ms']} ms in a fresh process "
             f"(target < {CATALOG_LOAD_TARGET_MS} ms).", "",
             "| tools/list | tools | concurrency | CPU ms/call | calls/s | p50 ms |",
             "|---|---|---|---|---|---|"]
    for key, point in measured["tools_list"].items():
        for service in ("catalog", "retently"):
            s = point[service]
            lines.append(f"| {service} | {listed(measured, service)} | {key[1:]} | "
                         f"{fig(s, 'cpu_ms_per_call')} | {fig(s, 'calls_per_s')} | "
                         f"{fig(s, 'p50_ms')} |")
    lines += ["", "CPU per tools/list call, catalog / Retently: " + ", ".join(
        f"{dash(p['cpu_catalog_vs_retently'])} at {k[1:]} concurrent"
        for k, p in measured["tools_list"].items()) + f" (target < {CATALOG_LIST_TARGET})."]
    return lines


def listed(measured: dict[str, Any], service: str) -> str:
    """A service's tools, and how many one answer holds when that is fewer (a page)."""
    every = measured["tools"][service]
    first = measured.get("tools_per_answer", {}).get(service, every)
    return str(every) if first == every else f"{every} ({first} an answer)"


def soak(report: dict[str, Any]) -> list[str]:
    if "soak" not in report:
        return []
    soaked = report["soak"]
    flat = "flat within 5%" if soaked["flat_within_5pct"] else "NOT flat within 5%"
    first, total = soaked["calls"]
    return ["", f"Soak (list_feedback at 50 concurrent): RSS "
                f"{soaked['after_10k']['rss_kib'] // 1024} MiB after {first:,} calls, "
                f"{soaked['after_100k']['rss_kib'] // 1024} MiB after {total:,} "
                f"({soaked['growth_pct']}% growth: {flat})."]


def write(report: dict[str, Any], *, smoke: bool) -> None:
    lines = [*preamble(report), *headline(report), *every_point(report), *curves(report),
             *catalog(report), *soak(report)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "smoke" if smoke else "latest"
    (RESULTS / f"{stem}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
