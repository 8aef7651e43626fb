"""The MCP Inspector CLI against the demo: list the tools of each service and call one, in both
protocol eras. Exits non-zero when any command fails. Node 22 and the Inspector come from
`make node` (.node/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from run import ROOT, start_demo

INSPECTOR = ROOT / ".node" / "node_modules" / ".bin" / "mcp-inspector"
CALLS = {
    "retently": ("rtly_mcp_pat_demoadmin_s3cr3t", "get_score", {"metric": "NPS"}),
    "refiner": ("refiner_demo_full", "get-projects", {}),
}


def inspector(url: str, token: str, era: str, *method: str) -> dict[str, object]:
    home = ROOT / "build" / "inspector-home"
    home.mkdir(parents=True, exist_ok=True)
    command = [str(INSPECTOR), "--cli", url, "--transport", "http",
               "--header", f"Authorization: Bearer {token}", "--protocol-era", era,
               "--format", "json", *method]
    env = {**os.environ, "HOME": str(home),
           "PATH": f"{INSPECTOR.parent}:{os.environ['PATH']}"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120,  # noqa: S603
                              env=env, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"inspector failed ({finished.returncode}): {' '.join(method)}\n"
                         f"{finished.stderr[-2000:]}")
    answer: dict[str, object] = json.loads(finished.stdout)
    return answer


def main() -> int:
    if not INSPECTOR.exists():
        print("the MCP Inspector is missing: run `make node`", file=sys.stderr)
        return 2
    demo, conformance_url = start_demo()
    base = conformance_url.removesuffix("/conformance/mcp")
    try:
        for service, (token, tool, arguments) in CALLS.items():
            url = f"{base}/{service}/mcp"
            for era in ("legacy", "modern"):
                listed = inspector(url, token, era, "--method", "tools/list")
                called = inspector(url, token, era, "--method", "tools/call", "--tool-name", tool,
                                   "--tool-args-json", json.dumps(arguments))
                result = called.get("result", called)
                if not isinstance(result, dict) or result.get("isError") is not False:
                    raise SystemExit(f"{service} {era}: {tool} failed: {called}")
                tools = listed.get("result", listed)
                count = len(tools["tools"]) if isinstance(tools, dict) else 0
                print(f"{service:<9} {era:<7} tools/list: {count} tools, "
                      f"tools/call {tool}: ok")
    finally:
        demo.terminate()
        demo.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
