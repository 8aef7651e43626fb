"""The processes of a benchmark run: each started in a session (and so a process group) of its
own, so that its CPU time, workers included, can be read from /proc by group, and stopped as a
group at the end. Also the persistent load generator the run talks to."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


PORT_CLASSES: Final = 16
"""Under the test suite's parallel processes, process `gwN` only takes ports whose half is N
modulo this (half: Linux hands out mostly even ports to bind), so two of them are never handed
the same free port: two `serve --workers` bound to one port with SO_REUSEPORT would share its
connections without an error."""


def free_port() -> int:
    """A loopback port free now (the caller binds it soon after)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    wanted = int(worker[2:]) % PORT_CLASSES if worker[2:].isdigit() else None
    for _ in range(100 * PORT_CLASSES):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if wanted is None or port // 2 % PORT_CLASSES == wanted:
            break
    return port


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 90,
               said: Path | None = None) -> None:
    """Wait until `url` answers. A process that exits first is reported with the last lines it
    wrote to `said` (its stderr), so that a failed start says why (a port taken, say)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            last = said.read_text(errors="replace").strip().splitlines()[-5:] if said else []
            raise SystemExit("\n".join([f"{url}: the process exited at startup", *last]))
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return  # it answers: good enough for "listening"
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url}: not ready within {seconds:.0f} s")


@dataclass(frozen=True)
class Placement:
    """Which CPUs the measured targets run on, and which the rest: the load generator and the
    upstreams. Left to the scheduler, a target at 50 concurrent shares its cores with them. On
    the 2-core machine a core of its own did not narrow the spread of the ratios, and the bare
    proxy is then held back by the load generator's core (bench/README.md, `--pin`), so it is
    an option, not the default."""

    targets: frozenset[int] | None = None
    rest: frozenset[int] | None = None

    @classmethod
    def split(cls) -> Placement:
        """The last CPU this process may use for the targets, the others for the rest; no
        placement at all on a single CPU."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls()
        return cls(frozenset(cpus[-1:]), frozenset(cpus[:-1]))


def place(pid: int, cpus: frozenset[int] | None) -> None:
    """Keep a process just started (no threads yet, no workers forked) on `cpus`; its threads
    and children inherit it."""
    if cpus:
        os.sched_setaffinity(pid, cpus)


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    ready_url: str
    port: int
    said: Path | None = None
    """Where its stderr goes."""

    @property
    def pgid(self) -> int:
        return self.process.pid  # start_new_session: the group is the process's own

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    """Processes started together and waited for together; all stopped on leaving."""

    started: list[Started] = field(default_factory=list)
    logs: tempfile.TemporaryDirectory[str] = field(default_factory=tempfile.TemporaryDirectory)
    """Each process's stderr, for the report of one that fails to start; gone on leaving."""

    def start(self, name: str, command: list[str], ready_path: str, port: int,
              env: dict[str, str] | None = None, cpus: frozenset[int] | None = None
              ) -> Started:
        said = Path(self.logs.name) / f"{len(self.started)}-{port}.log"
        with said.open("wb") as stderr:
            process = subprocess.Popen(command, env={**os.environ, **(env or {})},  # noqa: S603
                                       stdout=subprocess.DEVNULL, stderr=stderr,
                                       cwd=ROOT, start_new_session=True)
        place(process.pid, cpus)
        one = Started(name, process, f"http://127.0.0.1:{port}{ready_path}", port, said)
        self.started.append(one)
        return one

    def wait_ready(self) -> None:
        for one in self.started:
            wait_ready(one.ready_url, one.process, said=one.said)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for one in reversed(self.started):
            if one.process.poll() is None:
                os.killpg(one.pgid, signal.SIGTERM)
        for one in self.started:
            try:
                one.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(one.pgid, signal.SIGKILL)
                one.process.wait(timeout=5)
        self.logs.cleanup()


class Loader:
    """`python -m bench.load --serve`, one process for the whole run: a point is one JSON line
    out and one back, instead of a Python start-up per point."""

    def __init__(self, cpus: frozenset[int] | None = None) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own module
            [PYTHON, "-m", "bench.load", "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=ROOT)
        place(self.process.pid, cpus)

    def measure(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the load generator stopped (exit {self.process.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def post_raw(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One request, its answer's bytes (a loopback probe outside any measurement)."""
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        raw: bytes = answer.read()
        return raw


def post_json(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(post_raw(url, body, headers))
    return result


def spec_load_ms(tree: Path | None = None) -> float:
    """How long loading a spec tree takes in a fresh process (default: the shipped specs)."""
    where = f"Path({str(tree)!r})" if tree else "SHIPPED_SPECS"
    code = ("import time;from pathlib import Path;from gateway.spec.loader import load_tree;"
            "from gateway.settings import SHIPPED_SPECS;t=time.perf_counter();"
            f"load_tree({where},{{}});print((time.perf_counter()-t)*1000)")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,  # noqa: S603
                         check=True, cwd=ROOT).stdout
    return round(float(out.strip().splitlines()[-1]), 1)
