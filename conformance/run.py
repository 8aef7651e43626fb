"""Run the MCP project's conformance suites against the gateway and write a report.

Starts `mcp-gateway demo --with-conformance` on free loopback ports, runs every server scenario
of @modelcontextprotocol/conformance 0.1.16 (2025-06-18, 2025-11-25) and 0.2.0-alpha.12
(--requirements 2026-07-28) with the baselines beside this file, and writes
build/conformance/report.md and report.json. Exit status 0 when every scenario passes or is
in its baseline with a reason. `--scenarios` limits the run (the bounded set of `make test`).
Node 22 and the suites come from `make node` (.node/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / ".node" / "node_modules"
OUT = ROOT / "build" / "conformance"
SUITES = {
    "2025": {"package": "conformance-0.1", "baseline": "baseline-2025.yml", "extra": []},
    "2026": {"package": "conformance-0.2", "baseline": "baseline-2026.yml",
             "extra": ["--requirements", "2026-07-28"]},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_demo() -> tuple[subprocess.Popen[bytes], str]:
    port, sandbox = free_port(), free_port()
    gateway = shutil.which("mcp-gateway", path=str(ROOT / ".venv" / "bin")) or "mcp-gateway"
    demo = subprocess.Popen(  # noqa: S603 - our own command line, no shell
        [gateway, "demo", "--with-conformance", "--port", str(port),
         "--sandbox-port", str(sandbox)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            raise SystemExit("the demo exited at startup")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return demo, f"{base}/conformance/mcp"
        except OSError:
            time.sleep(0.2)
    demo.terminate()
    raise SystemExit("the demo did not become ready within 30 s")


def scenario_results(directory: Path) -> dict[str, dict[str, Any]]:
    """Per scenario: passed/failed check counts and the failing checks, from checks.json."""
    results: dict[str, dict[str, Any]] = {}
    for checks_file in sorted(directory.glob("server-*/checks.json")):
        checks = json.loads(checks_file.read_text())
        name = checks_file.parent.name.removeprefix("server-").rsplit("-", 6)[0]
        failed = [c["id"] for c in checks if c.get("status") == "FAILURE"]
        passed = sum(1 for c in checks if c.get("status") == "SUCCESS")
        results[name] = {"passed": passed, "failed": failed}
    return results


def baseline(path: Path) -> set[str]:
    entries = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("- "):
            entries.add(line[2:].strip())
    return entries


def verdict(scenario: str, outcome: dict[str, Any], expected: set[str]) -> str:
    if not outcome["failed"]:
        return "passed"
    if scenario in expected or all(f"{scenario}:{check}" in expected
                                   for check in outcome["failed"]):
        return "not applicable"
    return "failed"


def run_suite(era: str, url: str, scenarios: list[str] | None) -> dict[str, Any]:
    suite = SUITES[era]
    cli = NODE / str(suite["package"]) / "dist" / "index.js"
    node = NODE / ".bin" / "node"
    if not cli.exists() or not node.exists():
        raise SystemExit("Node 22 and the conformance suites are missing: run `make node`")
    out = OUT / era
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    names = scenarios or [None]
    for name in names:
        command = [str(node), str(cli), "server", "--url", url, "-o", str(out),
                   *([] if name else suite["extra"]), *(["--scenario", name] if name else [])]
        if name and era == "2026":
            command += ["--spec-version", "2026-07-28"]
        subprocess.run(command, check=False, stdout=subprocess.DEVNULL,  # noqa: S603
                       stderr=subprocess.DEVNULL, timeout=600,
                       env={**os.environ, "PATH": f"{NODE / '.bin'}:{os.environ['PATH']}"})
    expected = baseline(Path(__file__).parent / str(suite["baseline"]))
    results = scenario_results(out)
    for scenario, outcome in results.items():
        outcome["verdict"] = verdict(scenario, outcome, expected)
    return results


def write_report(report: dict[str, dict[str, Any]]) -> str:
    lines = ["# Conformance report", ""]
    for era, results in report.items():
        counts = {v: sum(1 for r in results.values() if r["verdict"] == v)
                  for v in ("passed", "not applicable", "failed")}
        lines += [f"## {era} suite: {counts['passed']} passed, {counts['not applicable']} "
                  f"not applicable, {counts['failed']} failed", "",
                  "| scenario | verdict | checks passed | checks failed |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['verdict']} | {r['passed']} | {', '.join(r['failed']) or '-'} |"
                  for name, r in sorted(results.items())]
        lines.append("")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=2))
    text = "\n".join(lines)
    (OUT / "report.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios-2025", default="", help="comma list (default: all)")
    parser.add_argument("--scenarios-2026", default="", help="comma list (default: all)")
    args = parser.parse_args()
    demo, url = start_demo()
    try:
        report = {
            era: run_suite(era, url, [s for s in getattr(args, f"scenarios_{era}").split(",")
                                      if s] or None)
            for era in SUITES
        }
    finally:
        demo.terminate()
        demo.wait(timeout=10)
    print(write_report(report))
    failed = [f"{era}:{name}" for era, results in report.items()
              for name, r in results.items() if r["verdict"] == "failed"]
    if failed:
        print("unexpected failures: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
