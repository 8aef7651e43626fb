"""The benchmark harness runs end to end (a few hundred calls, no targets), so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO


def test_the_benchmark_smoke_run_measures_every_workload_without_errors() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--no-peer", "--workers", "2"], cwd=REPO,
        capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads((REPO / "bench" / "results" / "smoke.json").read_text())
    keys = {f"{w}@{c}" for w in ("list_feedback", "get_responses", "tools_list", "write_preview")
            for c in (1, 50)}
    assert set(report["workloads"]) == keys
    for point, targets in report["workloads"].items():
        scaled = {"gateway x2 workers"} if point == "list_feedback@50" else set()
        assert set(targets) == {"gateway", "baseline"} | scaled
        for measured in targets.values():
            assert measured["errors"] == 0
            assert measured["calls_per_s"] > 0 and measured["p99_ms"] >= measured["p50_ms"]
    assert 0 < report["spec_load_ms"] < 5000
    workers = report["workloads"]["list_feedback@50"]["gateway x2 workers"]
    assert workers["peak_rss_kib"] > report["workloads"]["list_feedback@50"]["gateway"][
        "peak_rss_kib"]  # summed over two worker processes
