"""The benchmark harness runs end to end (a few dozen calls per point, the fast upstream only,
a 200-tool catalog), so it cannot rot, and reports every figure it exists for."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.procfs import machine_state, machine_ticks
from bench.targets import Fleet, Placement, free_port
from tests.support import REPO, unmeasured_environment

HEADLINE = ("list_feedback", "get_responses", "tools_list", "write_preview")
UPSTREAM_CALLING = ("list_feedback", "get_responses", "write_preview")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--no-peer", "--workers", "2", "--pin"],
        cwd=REPO,
        capture_output=True, text=True, timeout=600, check=False, env=unmeasured_environment())
    assert finished.returncode == 0, finished.stderr[-3000:]
    result: dict[str, Any] = json.loads((REPO / "bench" / "results" / "smoke.json").read_text())
    return result


def test_every_workload_is_measured_on_every_target_without_errors(
        report: dict[str, Any]) -> None:
    assert report["upstreams"] == ["fast"] and set(report["modes"]) == {"fast"}
    points = report["modes"]["fast"]["workloads"]
    assert set(points) == {f"{w}@{c}" for w in HEADLINE for c in (1, 50)}
    plan = report["plan"]["headline"]
    for point, targets in points.items():
        scaled = {"gateway x2 workers"} if point == "list_feedback@50" else set()
        assert set(targets) == {"gateway", "baseline"} | scaled
        planned = plan["rounds"] * (plan["calls"] if point.endswith("@50") else max(
            plan["floor"], plan["calls"] // 8))
        for measured in targets.values():
            assert measured["errors"] == 0 and measured["calls"] == planned
            assert measured["calls_per_s"] > 0 and measured["p99_ms"] >= measured["p50_ms"]
            assert measured["calls_per_s_range"][0] <= measured["calls_per_s"]
            assert measured["upstream_cpu_ms_per_call"] is not None
    assert 0 < report["spec_load_ms"] < 5000
    workers = points["list_feedback@50"]["gateway x2 workers"]
    assert workers["peak_rss_kib"] > points["list_feedback@50"]["gateway"][
        "peak_rss_kib"]  # summed over two worker processes


def test_cpu_per_call_is_measured_for_every_target(report: dict[str, Any]) -> None:
    points = report["modes"]["fast"]["workloads"]
    for point in ("list_feedback@1", "list_feedback@50"):
        for target, measured in points[point].items():
            assert 0 < measured["cpu_ms_per_call"] < 100, (point, target)
    for target in ("gateway", "baseline"):
        assert sum(p[target]["cpu_ms_per_call"] for p in points.values()) > 0
        for measured in points.values():
            assert measured[target]["cpu_ms_per_call"] >= 0
    point = points["list_feedback@50"]
    gateway, baseline = point["gateway"], point["baseline"]
    ratios = [g / b for g, b in zip(gateway["cpu_ms_per_call_runs"],
                                    baseline["cpu_ms_per_call_runs"], strict=True)]
    assert gateway["cpu_vs_baseline"] == round(statistics.median(ratios), 2)
    assert gateway["calls_per_s_vs_baseline"] == round(statistics.median(
        g / b for g, b in zip(gateway["calls_per_s_runs"], baseline["calls_per_s_runs"],
                              strict=True)), 2)


def test_the_fast_upstream_answers_from_memory(report: dict[str, Any]) -> None:
    stats = report["modes"]["fast"]["upstream_stats"]
    points = report["modes"]["fast"]["workloads"]
    counted = sum(m["calls"] for key, targets in points.items() for m in targets.values()
                  if key.partition("@")[0] in UPSTREAM_CALLING)
    assert stats["hits"] >= counted  # every counted call's upstream request, from memory
    assert 0 < stats["keys"] <= stats["captured"] < counted // 10


def test_the_rows_curves_have_their_points(report: dict[str, Any]) -> None:
    curves = report["curves"]
    feedback = curves["list_feedback"]["points"]
    assert [p["rows"] for p in feedback] == [10, 50, 100, 500]
    assert [p["rows_returned"] for p in feedback] == [10, 50, 100, 500]
    responses = curves["get_responses"]["points"]
    assert [(p["rows"], p["rows_returned"]) for p in responses] == [(500, 500)]
    for point in (*feedback, *responses):
        assert set(point["targets"]) == {"gateway", "baseline"}
        assert point["targets"]["gateway"]["errors"] == 0
        assert point["targets"]["gateway"]["cpu_ms_per_call"] > 0
        assert point["cpu_us_per_row"]["gateway"] == round(
            point["targets"]["gateway"]["cpu_ms_per_call"] * 1000 / point["rows_returned"], 3)
    assert feedback[-1]["targets"]["gateway"]["cpu_ms_per_call"] > feedback[0]["targets"][
        "gateway"]["cpu_ms_per_call"]  # 500 rows cost more than 10
    assert curves["list_feedback"]["fit"]["us_per_row"] > 0
    assert curves["upstream_stats"]["padded"] >= 1  # the sandbox has 350 feedback rows, not 500
    assert len(curves["list_feedback"]["marginal_us_per_row"]) == 3


def test_the_catalog_is_imported_loaded_and_listed(report: dict[str, Any]) -> None:
    catalog = report["catalog"]
    assert catalog["operations"] == 200
    assert catalog["tools"] == {"catalog": 200, "retently": 53}
    assert catalog["tools_per_answer"] == {"catalog": 100, "retently": 53}  # a page at most
    assert 0 < catalog["load_ms"] < 30_000
    assert set(catalog["tools_list"]) == {"c1", "c50"}
    for point in catalog["tools_list"].values():
        assert point["catalog"]["errors"] == 0 and point["retently"]["errors"] == 0
    assert sum(p["catalog"]["cpu_ms_per_call"] for p in catalog["tools_list"].values()) > 0


def test_the_markdown_report_has_every_table(report: dict[str, Any]) -> None:
    text = (REPO / "bench" / "results" / "smoke.md").read_text()
    for heading in ("## Headline", "## Every point", "## CPU against rows", "## Catalog size"):
        assert heading in text
    assert "| list_feedback | fast | gateway |" in text
    assert "soak" not in report  # the smoke run leaves the 100,000 calls out


def test_a_process_that_fails_to_start_is_reported_with_what_it_said() -> None:
    with Fleet() as fleet:
        fleet.start("taken", [sys.executable, "-c", "import sys; sys.exit('port 1 is taken')"],
                    "/healthz", free_port())
        with pytest.raises(SystemExit, match=r"exited at startup\nport 1 is taken"):
            fleet.wait_ready()


def test_pinned_targets_get_a_cpu_of_their_own(report: dict[str, Any]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    placement = report["placement"]
    if len(cpus) < 2:
        assert placement == {"targets": [], "rest": []}
        return
    assert placement == {"targets": cpus[-1:], "rest": cpus[:-1]}
    with Fleet() as fleet:
        started = fleet.start("pinned", [sys.executable, "-c", "import time; time.sleep(30)"],
                              "/", free_port(), cpus=Placement.split().targets)
        assert os.sched_getaffinity(started.process.pid) == {cpus[-1]}


def test_the_report_says_what_state_the_machine_was_in(report: dict[str, Any]) -> None:
    state = report["machine"]
    assert state["cpus"] == os.cpu_count() and state["load_before"] >= 0
    assert 0 <= state["steal_pct"] <= 100 and 0 <= state["idle_pct"] < 100
    assert state["steal_pct"] + state["idle_pct"] <= 100
    text = (REPO / "bench" / "results" / "smoke.md").read_text()
    assert f"Machine: {state['cpus']} CPUs; load average {state['load_before']}" in text
    assert f"{state['steal_pct']}% taken by the host" in text


def test_the_machine_state_is_the_share_of_each_kind_of_cpu_time() -> None:
    before = {"user": 100, "system": 50, "idle": 1000, "iowait": 0, "steal": 10}
    after = {"user": 400, "system": 150, "idle": 1500, "iowait": 20, "steal": 90}
    # 1,000 ticks spent: 300 user, 100 system, 500 idle, 20 waiting, 80 stolen
    assert machine_state(before, after) == {"steal_pct": 8.0, "idle_pct": 52.0}
    ticks = machine_ticks()
    assert set(ticks) >= {"user", "system", "idle", "steal"} and ticks["idle"] > 0


def _alive(pid: int) -> bool:
    """Running, not a zombie left for a parent that is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_a_run_stopped_with_sigterm_stops_every_server_it_started() -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "bench.run", "--smoke", "--no-peer", "--workers", "0",
         "--no-curves", "--no-catalog"], cwd=REPO, env=unmeasured_environment(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children")
    started: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        # the load generator, the sandbox, the fast upstream, the gateway
        while len(started) < 4 and time.monotonic() < deadline:
            started |= {int(pid) for pid in children.read_text().split()}
            time.sleep(0.05)
        assert len(started) >= 4
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=60)
    finally:
        run.kill()
        lingering = [pid for pid in started if _alive(pid)]
        for pid in lingering:
            os.kill(pid, signal.SIGKILL)
    assert lingering == []
    assert code == 128 + signal.SIGTERM
