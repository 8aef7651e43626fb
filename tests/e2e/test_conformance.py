"""The MCP project's own conformance suites against the gateway, both eras.

`make test` runs a bounded set (lifecycle, tools, header validation, statelessness, caching,
multi-round input);
`make check-all` (`-m slow`) runs every scenario. Node 22 and the suites come from `make node`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO

RUNNER = REPO / "conformance" / "run.py"
SUITES = REPO / ".node" / "node_modules"
BOUNDED_2025 = ["server-initialize", "ping", "tools-list", "tools-call-simple-text",
                "tools-call-error", "tools-call-with-progress", "dns-rebinding-protection"]
BOUNDED_2026 = ["server-stateless", "tools-list", "tools-call-simple-text",
                "tools-call-with-progress", "http-header-validation",
                "http-custom-header-server-validation", "caching", "sep-2164-resource-not-found",
                "input-required-result-multi-round", "input-required-result-tampered-state",
                "input-required-result-capability-check",
                "input-required-result-non-tool-request"]


def run(*arguments: str) -> tuple[int, dict[str, dict[str, dict[str, object]]]]:
    if not (SUITES / "conformance-0.1").exists() or not (SUITES / "conformance-0.2").exists():
        pytest.skip("the conformance suites are not installed in .node/ (make node installs them)")
    finished = subprocess.run([sys.executable, str(RUNNER), *arguments],  # noqa: S603
                              capture_output=True, text=True, timeout=900, check=False)
    report = json.loads((REPO / "build" / "conformance" / "report.json").read_text())
    return finished.returncode, report


def test_the_bounded_conformance_set_passes_in_both_eras() -> None:
    code, report = run("--scenarios-2025", ",".join(BOUNDED_2025),
                       "--scenarios-2026", ",".join(BOUNDED_2026))
    verdicts = {era: {name: r["verdict"] for name, r in results.items()}
                for era, results in report.items()}
    assert verdicts["2025"] == dict.fromkeys(BOUNDED_2025, "passed")
    assert verdicts["2026"] == {**dict.fromkeys(BOUNDED_2026, "passed"),
                                "server-stateless": "not applicable"}
    assert code == 0


@pytest.mark.slow
def test_every_scenario_passes_or_is_in_the_baseline() -> None:
    code, report = run()
    failed = {f"{era}:{name}" for era, results in report.items()
              for name, r in results.items() if r["verdict"] == "failed"}
    assert failed == set()
    assert code == 0
    assert len(report["2025"]) >= 30 and len(report["2026"]) >= 40
