"""A soak: many calls through the gateway at a steady concurrency while the upstream misbehaves now
and then; no call may fail in a way the faults do not explain, and the gateway's memory must stay
flat.

Three processes on loopback: a fault-injecting upstream (`python -m bench.soak upstream`), the
gateway (`python -m gateway serve`) over a one-tool spec tree written to a temporary folder, and
this one, which drives `tools/call` at the given concurrency with aiohttp. Each call carries its
number (`n`) to the upstream, which records the faults it injected per call, so every tool error
is matched with the fault behind it.

    python -m bench.soak --calls 100000 --concurrency 50   # the full soak (make check-all)
    python -m bench.soak --calls 3000 --concurrency 20     # the bounded one (make test)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from bench.procfs import rss_kib

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
TOKEN: Final = "soak-token"  # the passthrough service lets the upstream judge it
HEADERS: Final = {"Content-Type": "application/json",
                  "Accept": "application/json, text/event-stream",
                  "MCP-Protocol-Version": "2025-06-18",
                  "Authorization": f"Bearer {TOKEN}"}

FAULTS: Final = ("503", "502", "429", "reset", "slow", "html", "malformed")
"""What the upstream injects, each as often as the others."""
TOLD: Final[dict[str, str | None]] = {
    "503": "service failed",  # retried; told only when every attempt met a fault
    "502": "service failed",
    "429": "rate limit",
    "reset": "exchange failed",
    "slow": None,  # 0.2 s is well inside the call's deadline: the call must succeed
    "html": "instead of JSON",
    "malformed": "not valid JSON",
}
"""The fragment of the tool error a call ending on that fault is expected to carry (None: the
call must succeed)."""
RETRIED: Final = frozenset({"503", "502", "429", "reset"})
"""Faults the gateway sends a read again after; the others end the call at once."""
SLOW_S: Final = 0.2
CALL_TIMEOUT_S: Final = 30.0
"""Per call, client side: twice the gateway's upstream deadline (15 s) and then some."""
STARTUP_S: Final = 60.0
RSS_SAMPLES: Final = 10


# ---------------------------------------------------------------------------------------------
# The upstream


@dataclass
class FaultPlan:
    """Which requests get a fault: a seeded draw per request, in arrival order."""

    rate: float
    seed: int
    rng: random.Random = field(init=False)
    requests: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    attempts: dict[int, list[str]] = field(default_factory=dict)
    """Per call number that met a fault: what each of its requests met ("ok" or a fault)."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # reproducible, not secret

    def next(self, call: int) -> str:
        self.requests += 1
        kind = (self.rng.choice(FAULTS) if self.rng.random() < self.rate else "ok")
        if kind != "ok":
            self.injected[kind] += 1
            self.attempts.setdefault(call, []).append(kind)
        elif call in self.attempts:
            self.attempts[call].append(kind)
        return kind

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "faults": dict(self.injected),
                "attempts": {str(n): kinds for n, kinds in self.attempts.items()}}


def item(call: int) -> bytes:
    return orjson.dumps({"n": call, "name": f"item {call}", "tags": ["soak", "read"],
                         "ok": True})


def reset(request: web.Request) -> None:
    """Drop the connection with a TCP reset after reading the request: the answer is lost."""
    transport = request.transport
    assert transport is not None  # a handler runs on an open connection
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def upstream_app(plan: FaultPlan) -> web.Application:
    async def read_item(request: web.Request) -> web.StreamResponse:
        call = int(request.query.get("n", "-1"))
        kind = plan.next(call)
        if kind == "503":
            return web.json_response({"message": "Unavailable"}, status=503)
        if kind == "502":
            return web.Response(status=502, text="Bad Gateway")
        if kind == "429":
            return web.json_response({"message": "Slow down"}, status=429)
        if kind == "reset":
            reset(request)
            raise asyncio.CancelledError  # nothing more to send on this connection
        if kind == "html":
            return web.Response(text="<html><body>Down for maintenance</body></html>",
                                content_type="text/html")
        if kind == "malformed":
            return web.Response(body=item(call)[:-7], content_type="application/json")
        if kind == "slow":
            await asyncio.sleep(SLOW_S)
        return web.Response(body=item(call), content_type="application/json")

    async def stats(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(plan.stats()), content_type="application/json")

    app = web.Application()
    app.router.add_get("/item", read_item)
    app.router.add_get("/stats", stats)
    return app


async def serve_upstream(port: int, rate: float, seed: int, fd: int | None = None) -> None:
    """Serve until stopped, on `port` or on the listening socket inherited as `fd`."""
    runner = web.AppRunner(upstream_app(FaultPlan(rate, seed)), access_log=None,
                           handle_signals=True)
    await runner.setup()
    site: web.BaseSite = (web.TCPSite(runner, "127.0.0.1", port, backlog=1024) if fd is None
                          else web.SockSite(runner, socket.socket(fileno=fd)))
    await site.start()
    bound = runner.addresses[0][1]
    print(f"upstream on http://127.0.0.1:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------------------------------
# The gateway's spec tree and the processes

SERVICE_YAML = """\
name: soak
title: Soak
endpoint: /soak/mcp
upstream: {{base_url: '{url}'}}
auth: {{resolver: passthrough, default_scopes: [items]}}
scopes: [{{name: items}}]
"""
TOOLS_YAML = """\
tools:
  - name: read_item
    kind: read
    description: Read one item.
    scopes: [items]
    input:
      n: {type: integer, minimum: 0, description: 'The call number'}
    request: {method: GET, path: /item, query: {n: '{n}'}}
"""


def spec_tree(root: Path, upstream_url: str) -> Path:
    folder = root / "specs" / "soak"
    folder.mkdir(parents=True)
    (folder / "service.yaml").write_text(SERVICE_YAML.format(url=upstream_url))
    (folder / "tools.yaml").write_text(TOOLS_YAML)
    return root / "specs"


@dataclass
class Started:
    process: subprocess.Popen[str]
    url: str
    log: Path

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextlib.contextmanager
def spawned(command: list[str], log: Path, env: dict[str, str],
            pass_fds: tuple[int, ...] = ()) -> Iterator[subprocess.Popen[str]]:
    """A command, its stderr kept in `log`; stopped (then killed) on the way out, whatever
    happened."""
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,  # noqa: S603
                                   text=True, cwd=ROOT, env=env, pass_fds=pass_fds)
    try:
        yield process
    finally:
        stop(process)


def listening(process: subprocess.Popen[str], log: Path) -> Started:
    """Wait (bounded) for the first line of a command that says where it listens
    (`... on http://host:port...`)."""
    assert process.stdout is not None  # piped by spawned
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_S)
    line = process.stdout.readline() if ready else ""
    if " on http://" not in line:
        stop(process)
        raise RuntimeError(f"{process.args!r} did not start within {STARTUP_S:.0f} s: "
                           f"{line!r}\n{log.read_text(errors='replace')[-2000:]}")
    return Started(process, line.split(" on ", 1)[1].split()[0].rstrip(":"), log)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    if process.stdout is not None:
        process.stdout.close()


def environment(**gateway: str) -> dict[str, str]:
    """A child's environment: ours without GATEWAY_ settings (a developer's own would change
    what is measured), with `gateway` settings, and this checkout importable."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**inherited, **{f"GATEWAY_{k.upper()}": v for k, v in gateway.items()},
            "PYTHONPATH": path}


# ---------------------------------------------------------------------------------------------
# The load and its verdict


@dataclass
class SoakReport:
    calls: int
    concurrency: int
    fault_rate: float
    seed: int
    seconds: float = 0.0
    ok: int = 0
    expected_errors: int = 0
    unexpected: int = 0
    examples: list[str] = field(default_factory=list)
    """The first few unexpected outcomes, in words."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """Calls by how they ended: "ok", or the fault an expected tool error came from."""
    upstream_requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    """Faults the upstream injected, by kind."""
    rss_kib: list[tuple[int, int]] = field(default_factory=list)
    """(calls answered, the gateway's VmRSS in KiB) at the start, after each tenth of the calls
    but the last, and at the end."""
    gateway_log_errors: int = 0
    """Lines the gateway logged at level error or above, or that are not JSON (a traceback)."""

    @property
    def calls_per_s(self) -> float:
        return round(self.calls / self.seconds, 1) if self.seconds else 0.0

    @property
    def faults_injected(self) -> int:
        return sum(self.faults.values())

    @property
    def rss_warm_kib(self) -> int:
        """The sample after a tenth of the calls (the warm-up)."""
        return self.rss_kib[1][1] if len(self.rss_kib) > 1 else 0

    @property
    def rss_end_kib(self) -> int:
        return self.rss_kib[-1][1] if self.rss_kib else 0

    @property
    def rss_growth(self) -> float:
        """End over warm-up, minus one."""
        return self.rss_end_kib / self.rss_warm_kib - 1 if self.rss_warm_kib else float("inf")

    def summary(self) -> str:
        return (f"soak: {self.calls} calls at concurrency {self.concurrency} in "
                f"{self.seconds:.1f} s ({self.calls_per_s} calls/s); "
                f"{self.faults_injected} faults injected in {self.upstream_requests} upstream "
                f"requests ({self.faults_injected / max(1, self.upstream_requests):.2%}); "
                f"ok {self.ok}, expected tool errors {self.expected_errors}, unexpected "
                f"{self.unexpected}; gateway log errors {self.gateway_log_errors}; RSS "
                f"{self.rss_warm_kib / 1024:.1f} MiB after warm-up, "
                f"{self.rss_end_kib / 1024:.1f} MiB at the end ({self.rss_growth:+.1%})")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "calls_per_s": self.calls_per_s,
                "faults_injected": self.faults_injected, "rss_warm_kib": self.rss_warm_kib,
                "rss_end_kib": self.rss_end_kib, "rss_growth": round(self.rss_growth, 4)}


@dataclass
class Answered:
    """How one call ended, before it is matched with the upstream's record."""

    call: int
    problem: str | None = None
    """Unexpected whatever the upstream did: a status, a JSON-RPC error, a timeout, a wrong
    result."""
    tool_error: str | None = None


def judge(call: int, status: int, body: bytes) -> Answered:
    """What one answer says, checked as far as it can be without the upstream's record."""
    if status != 200:
        return Answered(call, problem=f"HTTP {status}: {body[:200]!r}")
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Answered(call, problem=f"not JSON: {body[:200]!r}")
    if not isinstance(message, dict) or message.get("id") != call:
        return Answered(call, problem=f"not the answer to call {call}: {body[:200]!r}")
    if "error" in message:
        return Answered(call, problem=f"JSON-RPC error {message['error']}")
    result = message.get("result")
    if not isinstance(result, dict):
        return Answered(call, problem=f"no result: {body[:200]!r}")
    text = " ".join(str(block.get("text", "")) for block in result.get("content", [])
                    if isinstance(block, dict))
    if result.get("isError") is True:
        return Answered(call, tool_error=text)
    structured = result.get("structuredContent")
    got = structured if isinstance(structured, dict) else _json_or_none(text)
    if not isinstance(got, dict) or got.get("n") != call:
        return Answered(call, problem=f"a result for another item: {body[:200]!r}")
    return Answered(call)


def _json_or_none(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def verdict(answered: Answered, attempts: dict[str, list[str]]) -> str | None:
    """The fault an expected tool error came from ("ok" for a success), or None when the
    outcome is unexpected."""
    if answered.problem is not None:
        return None
    met = attempts.get(str(answered.call), [])
    if answered.tool_error is None:
        return "ok"
    if not met or met[-1] == "ok":
        return None  # an error although the upstream's last answer to this call was good
    last = met[-1]
    fragment = TOLD[last]
    if fragment is None or fragment not in answered.tool_error:
        return None
    if last in RETRIED and "ok" in met:
        return None  # a retried fault is told only once every attempt met one
    return last


async def drive(url: str, calls: int, concurrency: int, gateway_pid: int,
                report: SoakReport) -> list[Answered]:
    """Send `calls` tool calls, `concurrency` at a time (closed loop), sampling the gateway's RSS
    every tenth of the calls."""
    numbers = itertools.count()
    answers: list[Answered] = []
    marks = {max(1, calls * k // RSS_SAMPLES) for k in range(1, RSS_SAMPLES)}
    report.rss_kib.append((0, rss_kib(gateway_pid)["rss_kib"]))
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while (call := next(numbers)) < calls:
                body = orjson.dumps({"jsonrpc": "2.0", "id": call, "method": "tools/call",
                                     "params": {"name": "read_item", "arguments": {"n": call}}})
                try:
                    async with session.post(url, data=body, headers=HEADERS) as response:
                        answers.append(judge(call, response.status, await response.read()))
                except TimeoutError:
                    answers.append(Answered(call, problem=f"no answer in {CALL_TIMEOUT_S} s"))
                except aiohttp.ClientError as exc:
                    answers.append(Answered(call, problem=f"client error {exc!r}"))
                if len(answers) in marks:
                    report.rss_kib.append((len(answers), rss_kib(gateway_pid)["rss_kib"]))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return answers


def gateway_log_errors(log: str) -> int:
    errors = 0
    for line in log.splitlines():
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            errors += 1
            continue
        if not isinstance(event, dict) or event.get("level") in ("error", "critical",
                                                                  "exception"):
            errors += 1
    return errors


def run_soak(calls: int, concurrency: int, fault_rate: float = 0.01, seed: int = 1,
             *, deadline_s: float | None = None) -> SoakReport:
    """Run the soak and say how it went. `deadline_s` bounds the load (default: at least 50
    calls a second, plus a minute)."""
    report = SoakReport(calls, concurrency, fault_rate, seed)
    limit = deadline_s if deadline_s is not None else 60 + calls / 50
    with (tempfile.TemporaryDirectory(prefix="soak-") as folder,
          socket.create_server(("127.0.0.1", 0), backlog=1024) as listener,
          contextlib.ExitStack() as processes):
        # The upstream's socket is bound here and handed over, so its address is known before
        # it runs and both processes start at once, without racing anyone for a free port.
        root = Path(folder)
        specs = spec_tree(root, f"http://127.0.0.1:{listener.getsockname()[1]}")
        upstream_process = processes.enter_context(spawned(
            [PYTHON, "-m", "bench.soak", "upstream", "--fd", str(listener.fileno()),
             "--fault-rate", str(fault_rate), "--seed", str(seed)],
            root / "upstream.log", environment(), pass_fds=(listener.fileno(),)))
        gateway_process = processes.enter_context(spawned(
            [PYTHON, "-m", "gateway", "serve", "--port", "0"], root / "gateway.log",
            environment(specs_dir=str(specs), log_level="warning", log_json="true",
                        access_log="false")))
        upstream = listening(upstream_process, root / "upstream.log")
        gateway = listening(gateway_process, root / "gateway.log")
        began = time.perf_counter()
        answers = asyncio.run(_bounded(
            drive(f"{gateway.url}/soak/mcp", calls, concurrency, gateway.process.pid, report),
            limit))
        report.seconds = round(time.perf_counter() - began, 3)
        report.rss_kib.append((len(answers), rss_kib(gateway.process.pid)["rss_kib"]))
        stats = asyncio.run(_bounded(_stats(upstream.url), 30))
        for name, running in (("upstream", upstream), ("gateway", gateway)):
            if running.process.poll() is not None:
                raise RuntimeError(f"the {name} exited during the soak:\n{running.log_tail()}")
        processes.close()  # stopped first, so what the gateway logs on the way out counts too
        report.gateway_log_errors = gateway_log_errors(gateway.log.read_text(errors="replace"))
    report.upstream_requests = stats["requests"]
    report.faults = stats["faults"]
    outcomes: Counter[str] = Counter()
    for answered in sorted(answers, key=lambda a: a.call):
        ended = verdict(answered, stats["attempts"])
        if ended is None:
            report.unexpected += 1
            if len(report.examples) < 20:
                met = stats["attempts"].get(str(answered.call), [])
                report.examples.append(f"call {answered.call} (upstream met: {met}): "
                                       f"{answered.problem or answered.tool_error}")
        else:
            outcomes[ended] += 1
    missing = calls - len(answers)
    if missing:
        report.unexpected += missing
        report.examples.append(f"{missing} calls never ended")
    report.outcomes = dict(outcomes)
    report.ok = outcomes["ok"]
    report.expected_errors = sum(outcomes.values()) - report.ok
    return report


async def _bounded(work: Any, seconds: float) -> Any:
    async with asyncio.timeout(seconds):
        return await work


async def _stats(upstream_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{upstream_url}/stats") as got:
        stats: dict[str, Any] = await got.json()
        return stats


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["upstream"]:
        parser = argparse.ArgumentParser(prog="python -m bench.soak upstream",
                                         description="the soak's fault-injecting upstream")
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument("--fd", type=int, default=None,
                            help="serve on this inherited listening socket instead")
        parser.add_argument("--fault-rate", type=float, default=0.01)
        parser.add_argument("--seed", type=int, default=1)
        args = parser.parse_args(argv[1:])
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_upstream(args.port, args.fault_rate, args.seed, args.fd))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--fault-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the report as JSON")
    args = parser.parse_args(argv)
    report = run_soak(args.calls, args.concurrency, args.fault_rate, args.seed)
    print(report.summary())
    for example in report.examples:
        print(f"  unexpected: {example}")
    if args.json:
        print(json.dumps(report.as_dict()))
    return 0 if report.unexpected == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
