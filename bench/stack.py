"""Everything a benchmark run serves, started at once (each in its own process group) and
waited for together:

- the sandbox (`python -m gateway sandbox`, rate limits off) and the fast upstream in front of
  it (bench/fast_upstream.py);
- per upstream mode: the gateway (`serve`), `serve --workers N` when N > 1, the baseline
  (bench/baseline.py) and the peer (bench/peer.py, when build/peer-venv exists);
- the gateway of the scaling curves (a copy of the shipped tree with raised bounds, on the
  fast upstream) and the gateway serving the 1,000-tool catalog next to Retently.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import catalog, scaling
from bench.points import Target
from bench.procfs import rss_kib
from bench.targets import PYTHON, ROOT, Fleet, Placement, Started, free_port, post_raw
from bench.workloads import WORKLOADS

PEER_PYTHON = ROOT / "build" / "peer-venv" / "bin" / "python"


def gateway_env(upstream: str) -> dict[str, str]:
    return {"RETENTLY_API_URL": upstream, "REFINER_API_URL": upstream,
            "REFINER_AUTH_URL": upstream, "GATEWAY_ACCESS_LOG": "false",
            "GATEWAY_LOG_LEVEL": "warning", "GATEWAY_LOG_JSON": "true",
            "GATEWAY_MAX_RESULT_BYTES": "400000",
            # write_preview measures what a preview costs, not the per-account preview limit.
            "RETENTLY_PREVIEWS_PER_MINUTE": "1000000"}


def _serve(fleet: Fleet, name: str, upstream: Started, *extra: str,
           cpus: frozenset[int] | None = None) -> Started:
    port = free_port()
    ready = "/readyz" if "--workers" in extra else "/healthz"
    return fleet.start(name, [PYTHON, "-m", "gateway", "serve", "--port", str(port), *extra],
                       ready, port, gateway_env(upstream.origin), cpus)


def gateway_target(name: str, started: Started) -> Target:
    return Target(name, f"{started.origin}/{{service}}/mcp", started.pgid)


def fast_stats(fast: Started) -> dict[str, Any]:
    """The fast upstream's counts so far (answers from memory, captures, passes)."""
    with urllib.request.urlopen(fast.ready_url, timeout=10) as answer:  # noqa: S310 - loopback
        stats: dict[str, Any] = json.loads(answer.read())
        return stats


@dataclass
class ModeStack:
    mode: str
    upstream: Started
    targets: list[Target] = field(default_factory=list)

    @property
    def upstream_name(self) -> str:
        return self.upstream.name

    @property
    def upstream_pgid(self) -> int:
        return self.upstream.pgid

    def upstream_stats(self) -> dict[str, Any] | None:
        return fast_stats(self.upstream) if self.mode == "fast" else None


@dataclass
class Stack:
    upstreams: dict[str, Started]
    modes: dict[str, ModeStack]
    baselines: dict[str, Target] = field(default_factory=dict)
    idle_rss: dict[str, int] = field(default_factory=dict)
    curve_gateway: Target | None = None
    catalog_gateway: Target | None = None
    catalog_built: dict[str, Any] = field(default_factory=dict)

    def mode(self, name: str) -> ModeStack:
        return self.modes[name]

    def fast_pgid(self) -> int:
        return self.upstreams["fast"].pgid

    def fast_stats(self) -> dict[str, Any]:
        return fast_stats(self.upstreams["fast"])

    def curve_baseline(self) -> Target:
        return self.baselines["fast"]

    def soak_gateway(self) -> Target:
        return next(t for t in (self.modes.get("fast") or self.modes["sandbox"]).targets
                    if t.name == "gateway")


def _start_gateways(fleet: Fleet, args: argparse.Namespace, stack: Stack,
                    scratch: Path, cpus: frozenset[int] | None) -> dict[str, Started]:
    """Wave one: the gateways (baselines need one's tools/list answer first), on the targets'
    CPUs; `serve --workers N` on all of them, since using more cores is its point."""
    fast = stack.upstreams["fast"]
    started: dict[str, Started] = {}
    for mode, each in stack.modes.items():
        started[mode] = _serve(fleet, f"gateway {mode}", each.upstream, cpus=cpus)
        each.targets.append(gateway_target("gateway", started[mode]))
        if args.workers > 1:
            workers = _serve(fleet, f"workers {mode}", each.upstream, "--workers",
                             str(args.workers))
            each.targets.append(gateway_target(f"gateway x{args.workers} workers", workers))
    if not args.no_curves:
        tree = scaling.curve_tree(scratch)
        stack.curve_gateway = gateway_target(
            "gateway", _serve(fleet, "curve gateway", fast, "--specs", str(tree), cpus=cpus))
    if not args.no_catalog:
        stack.catalog_built = catalog.build_tree(scratch / "catalog", args.catalog_operations)
        tree = catalog.serving_tree(stack.catalog_built["tree"], scratch / "catalog")
        stack.catalog_gateway = gateway_target(
            "gateway", _serve(fleet, "catalog gateway", fast, "--specs", str(tree), cpus=cpus))
    return started


def _start_proxies(fleet: Fleet, args: argparse.Namespace, stack: Stack,
                   tools_list: Path, cpus: frozenset[int] | None) -> None:
    """Wave two: a baseline per upstream in use, a peer per mode, on the targets' CPUs."""
    wanted = set(stack.modes) | ({"fast"} if not args.no_curves else set())
    for name in sorted(wanted):
        port = free_port()
        started = fleet.start(f"baseline {name}", [
            PYTHON, "-m", "bench.baseline", "--port", str(port), "--upstream",
            stack.upstreams[name].origin, "--tools-list", str(tools_list)], "/", port,
            cpus=cpus)
        stack.baselines[name] = Target("baseline", f"{started.origin}/{{service}}",
                                       started.pgid, "baseline")
        if name in stack.modes:
            stack.modes[name].targets.insert(1, stack.baselines[name])
    if args.no_peer or not PEER_PYTHON.exists():
        return
    for mode, each in stack.modes.items():
        port = free_port()
        peer = fleet.start(f"peer {mode}", [
            str(PEER_PYTHON), str(ROOT / "bench" / "peer.py"), "--port", str(port),
            "--upstream", each.upstream.origin], "/mcp", port, cpus=cpus)
        each.targets.insert(2, Target("peer", f"{peer.origin}/mcp", peer.pgid, "peer"))


def start_stack(fleet: Fleet, args: argparse.Namespace, modes: list[str],
                scratch: Path, placement: Placement) -> Stack:
    """The upstreams on `placement.rest` (with the load generator), the targets on
    `placement.targets`."""
    sandbox_port, fast_port = free_port(), free_port()
    sandbox = fleet.start("sandbox", [PYTHON, "-m", "gateway", "sandbox", "--port",
                                      str(sandbox_port)], "/api/v2/ping", sandbox_port,
                          cpus=placement.rest)
    fast = fleet.start("fast upstream", [PYTHON, "-m", "bench.fast_upstream", "--port",
                                         str(fast_port), "--sandbox", sandbox.origin],
                       "/_bench/stats", fast_port, cpus=placement.rest)
    upstreams = {"sandbox": sandbox, "fast": fast}
    stack = Stack(upstreams, {mode: ModeStack(mode, upstreams[mode]) for mode in modes})
    gateways = _start_gateways(fleet, args, stack, scratch, placement.targets)
    fleet.wait_ready()
    stack.idle_rss = rss_kib(gateways[modes[0]].pgid)
    body, headers = WORKLOADS["tools_list"].request("gateway")
    tools_list = scratch / "tools-list.json"
    tools_list.write_bytes(post_raw(f"{gateways[modes[0]].origin}/retently/mcp", body, headers))
    _start_proxies(fleet, args, stack, tools_list, placement.targets)
    fleet.wait_ready()
    return stack
