"""Three `mcp-gateway serve` replicas behind a real HAProxy, as a deployment runs them: one Redis
and one secret key shared by all three, one sandbox upstream, one audit file. Reads keep flowing
when a replica is killed mid-load; a confirmation is executed once whichever replicas it is sent
to; the write limit is one budget for all replicas; and no write reaches the upstream twice.
The last two tests show what a replica that dies between sending a write and answering it
leaves behind: a resend is told the outcome is unknown (never "preview again"), and the audit
log holds the `sending` record written before the request left.

Everything runs on 127.0.0.1. HAProxy retries (on another server) only connections that could not
be made, so a request that reached a replica is never sent again: whatever the load sees at the
kill is the gateway's own behaviour, not the balancer's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from bench.run import free_port
from gateway.server.cli import build_parser
from gateway.settings import SHIPPED_SPECS
from sandbox import FIXTURES_DIR
from tests.support import auth, first_line, rpc
from tests.writes.test_redis_limits import running_redis

ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
WRITER = "rtly_mcp_pat_demowriter_s3cr3t"  # acc_demo
OTHER_ADMIN = "rtly_mcp_pat_otheradmin_s3cr3t"  # acc_other: a write budget of its own
READER_OF = {"acc_demo": "rtly_mcp_pat_demoadmin_s3cr3t", "acc_other": OTHER_ADMIN}
FEEDBACK: dict[str, list[str]] = {account: [row["id"] for row in rows] for account, rows in
                                  json.loads((FIXTURES_DIR / "retently" / "feedback.json")
                                             .read_text()).items()}
WRITE_LIMIT = 4
"""Writes a minute per account in the write tests' cluster (the shipped spec says 30)."""
READ = ("list_feedback", {"limit": 5})
CHECK_INTERVAL_MS = 200
"""HAProxy's health check interval: a dead replica is marked down after two failed checks."""


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    sandbox_url: str
    proxy_url: str
    replicas: list[Replica]
    stats_socket: Path
    audit_log: Path
    audit_key: str
    env: dict[str, str]
    """What every replica is started with (shared secret, Redis, upstream, audit file)."""
    specs: Path
    logs: Path
    spare: Replica | None = None
    """A fourth replica, not behind HAProxy, whose upstream is whatever listens on
    `spare_upstream_port` (a test's own proxy in front of the sandbox)."""
    spare_upstream_port: int = 0
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    """Marks this cluster's notes, so they are told apart from the fixtures' own."""
    done: Counter[str] = field(default_factory=Counter)
    """Note contents whose confirmation was answered "done", over every test on this cluster."""

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    def stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's view of each replica (`show stat` on its admin socket), by server name."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(2)
            connection.connect(str(self.stats_socket))
            connection.sendall(b"show stat\n")
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        header, *rows = answer.decode().strip().splitlines()
        names = header.lstrip("# ").split(",")
        servers = [dict(zip(names, row.split(","), strict=False)) for row in rows]
        return {s["svname"]: s for s in servers
                if s["pxname"] == "gateways" and s["svname"] not in ("FRONTEND", "BACKEND")}

    def restart(self, replica: Replica) -> Replica:
        """Start a killed replica again on its port, in its place."""
        replica.process.communicate(timeout=10)
        process = spawn_replica(replica.name, replica.port, self.env, self.specs, self.logs)
        try:
            again = listening(replica.name, process)
        except BaseException:
            _stop(process)  # not in `replicas` yet: nothing else would stop it
            raise
        self.replicas[self.replicas.index(replica)] = again
        return again

    def notes(self, account: str, feedback_id: str) -> list[str]:
        """The notes the sandbox holds on a feedback response, read from its REST API directly
        (not through a gateway), this cluster's only."""
        answer = httpx.get(f"{self.sandbox_url}/api/v2/feedback/{feedback_id}", timeout=10,  # noqa: TID251 - a test's one-off read of the sandbox
                           headers={"Authorization": f"api_key={READER_OF[account]}"})
        answer.raise_for_status()
        rows = answer.json()["data"]["responses"]
        return [n["content"] for n in rows[0].get("notes") or [] if self.run in n["content"]]

    def audit(self) -> Counter[str]:
        """Outcomes of the executions the audit file holds, all replicas together."""
        if not self.audit_log.exists():
            return Counter()
        records = [json.loads(line) for line in self.audit_log.read_text().splitlines()]
        return Counter(r["outcome"] for r in records if r["phase"] == "execute")


def _haproxy_config(port: int, backends: list[Replica], stats_socket: Path) -> str:
    servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in backends)
    return f"""\
global
    maxconn 2000
    stats socket {stats_socket} mode 600 level admin
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 20s
    timeout server 20s
    timeout check 1s
    # Only a connection that could not be made is tried again, on another server: a request
    # that reached a replica is never sent twice.
    retries 2
    retry-on conn-failure
    option redispatch 1

frontend mcp
    bind 127.0.0.1:{port}
    default_backend gateways

backend gateways
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS}ms fastinter {CHECK_INTERVAL_MS}ms \
downinter {CHECK_INTERVAL_MS}ms fall 2 rise 2
{servers}
"""


def _spec_tree(root: Path) -> Path:
    """The shipped Retently spec alone (its write limit is read from
    RETENTLY_WRITES_PER_MINUTE)."""
    tree = root / "specs"
    shutil.copytree(SHIPPED_SPECS / "retently", tree / "retently")
    return tree


def _wait(what: str, ready: Any, timeout_s: float, *watched: subprocess.Popen[str]) -> None:
    """Poll `ready()` until true, failing after `timeout_s` or when a watched process exits."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        for process in watched:
            if process.poll() is not None:
                pytest.fail(f"{what}: {process.args!r} exited with {process.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200  # noqa: TID251 - a readiness probe
    except httpx.TransportError:
        return False


def spawn_replica(name: str, port: int, env: dict[str, str], specs: Path,
                  logs: Path) -> subprocess.Popen[str]:
    """`mcp-gateway serve` on 127.0.0.1:port (0 picks one), its log in `logs/<name>.log`."""
    with (logs / f"{name}.log").open("a") as log:
        return subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments, no shell
            [sys.executable, "-m", "gateway", "serve", "--specs", str(specs),
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=subprocess.PIPE, stderr=log, text=True)


def listening(name: str, process: subprocess.Popen[str]) -> Replica:
    """The replica once it says where it listens."""
    line = first_line(process, timeout_s=60)  # a bound for a busy machine: 2 s when idle
    assert " on http://127.0.0.1:" in line, line
    return Replica(name, int(line.split(" on http://127.0.0.1:")[1].split(":")[0]), process)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    process.communicate(timeout=10)


@contextmanager
def running_cluster(tmp: Path, *, writes_per_minute: int, previews_per_minute: int = 120,
                    spare: bool = False) -> Iterator[Cluster]:
    """Redis, the sandbox, three replicas sharing their secret and Redis, and HAProxy in front;
    with `spare`, a fourth replica started at the same time (see `Cluster.spare`)."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (make services installs it with apt-get)")
    with ExitStack() as stack:
        redis_url, _ = stack.enter_context(running_redis())
        sandbox_port = free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        with (tmp / "sandbox.log").open("a") as log:
            sandbox = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments, no shell
                [sys.executable, "-m", "gateway", "sandbox", "--port", str(sandbox_port)],
                stdout=subprocess.PIPE, stderr=log, text=True)
        stack.callback(_stop, sandbox)
        audit_key = uuid.uuid4().hex
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("GATEWAY_", "RETENTLY_", "REFINER_"))}
        env |= {"GATEWAY_SECRET_KEY": "one-key-for-every-replica-" + uuid.uuid4().hex,
                "GATEWAY_REDIS_URL": redis_url,
                "GATEWAY_AUDIT_LOG_PATH": str(tmp / "audit.jsonl"),
                "GATEWAY_AUDIT_KEY": audit_key,
                "GATEWAY_LOG_LEVEL": "warning", "GATEWAY_LOG_JSON": "true",
                "GATEWAY_ACCESS_LOG": "false",
                "RETENTLY_API_URL": sandbox_url,
                "RETENTLY_WRITES_PER_MINUTE": str(writes_per_minute),
                "RETENTLY_PREVIEWS_PER_MINUTE": str(previews_per_minute)}
        specs = _spec_tree(tmp)
        started = {name: spawn_replica(name, 0, env, specs, tmp) for name in ("g1", "g2", "g3")}
        spare_upstream_port = free_port() if spare else 0
        if spare:  # its own write limit is high, so that it does not depend on what others spent
            started["g4"] = spawn_replica("g4", 0, env | {
                "RETENTLY_API_URL": f"http://127.0.0.1:{spare_upstream_port}",
                "RETENTLY_WRITES_PER_MINUTE": "100000"}, specs, tmp)
        for process in started.values():
            stack.callback(_stop, process)
        replicas = [listening(name, process) for name, process in started.items()]
        spare_replica = replicas.pop() if spare else None
        assert first_line(sandbox, timeout_s=60) == f"sandbox upstream on {sandbox_url}"
        for replica in [*replicas, *filter(None, [spare_replica])]:
            _wait(f"{replica.name} ready", lambda r=replica: _answers(r.url + "/readyz"), 30,
                  replica.process)

        proxy_port = free_port()
        config = tmp / "haproxy.cfg"
        stats_socket = tmp / "haproxy.sock"
        config.write_text(_haproxy_config(proxy_port, replicas, stats_socket))
        with (tmp / "haproxy.log").open("a") as log:
            balancer = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments, no shell
                [haproxy, "-db", "-f", str(config)], stdout=log, stderr=log, text=True)
        stack.callback(_stop, balancer)
        cluster = Cluster(sandbox_url, f"http://127.0.0.1:{proxy_port}", replicas,
                          stats_socket, tmp / "audit.jsonl", audit_key, env, specs, tmp,
                          spare_replica, spare_upstream_port)

        @stack.callback
        def stop_restarted() -> None:
            for replica in cluster.replicas:
                _stop(replica.process)

        def all_up() -> bool:
            try:
                states = cluster.stats()
            except OSError:
                return False
            return all(states[r.name]["check_status"] == "L7OK" for r in replicas)

        _wait("HAProxy sees every replica up", all_up, 10, balancer)
        _wait("HAProxy serves", lambda: _answers(cluster.proxy_url + "/healthz"), 5, balancer)
        yield cluster


# ---- calls ---------------------------------------------------------------------------------

async def call(session: aiohttp.ClientSession, url: str, token: str, tool: str,
               arguments: dict[str, Any]) -> dict[str, Any]:
    """One `tools/call` as a plain JSON-RPC POST; its result (an error is a failed assertion)."""
    async with session.post(f"{url}/retently/mcp", headers=auth(token),
                            json=rpc("tools/call", {"name": tool, "arguments": arguments}),
                            timeout=aiohttp.ClientTimeout(total=15)) as response:
        assert response.status == 200, (url, response.status, await response.text())
        message: dict[str, Any] = await response.json()
    assert "result" in message, message
    result: dict[str, Any] = message["result"]
    return result


def text_of(result: dict[str, Any]) -> str:
    text: str = result["content"][0]["text"]
    return text


def is_done(result: dict[str, Any]) -> bool:
    return not result.get("isError") and result["structuredContent"]["status"] == "done"


async def preview_note(session: aiohttp.ClientSession, url: str, token: str, feedback_id: str,
                       content: str) -> str:
    """Preview a note; its confirmation token."""
    preview = await call(session, url, token, "add_note", {"id": feedback_id, "content": content})
    assert preview.get("isError") is not True, text_of(preview)
    assert preview["structuredContent"]["status"] == "preview"
    token_: str = preview["structuredContent"]["confirmation_token"]
    return token_


async def confirm_note(session: aiohttp.ClientSession, url: str, token: str, feedback_id: str,
                       content: str, confirmation: str) -> dict[str, Any]:
    return await call(session, url, token, "add_note", {
        "id": feedback_id, "content": content, "confirmation_token": confirmation})


def assert_each_write_applied_once(cluster: Cluster, account: str, feedback_id: str,
                                   contents: list[str]) -> None:
    """The upstream holds each note confirmed "done" exactly once and no note that was not; the
    audit file (all replicas) records as many executions done as were answered done."""
    held = Counter(cluster.notes(account, feedback_id))
    assert held == Counter({c: 1 for c in contents if cluster.done[c]})
    assert all(count <= 1 for count in cluster.done.values()), cluster.done
    assert cluster.audit()["done"] == sum(cluster.done.values())


# ---- the write tests: one cluster for all of them ------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("writes"), writes_per_minute=WRITE_LIMIT,
                         spare=True) as running:
        yield running
    if not running.audit():
        return  # no write was confirmed (the write tests were not run)
    # Every replica appended to one audit file: the chain they built together must hold.
    key_file = running.logs / "audit.key"
    key_file.write_text(running.audit_key)
    verify = build_parser().parse_args(
        ["audit", "verify", "--key-file", str(key_file), str(running.audit_log)])
    assert verify.run(verify) == 0  # `mcp-gateway audit verify`, in this process


@pytest.fixture
def whole(cluster: Cluster) -> Cluster:
    """The cluster with all three replicas up (one another test killed is started again)."""
    for replica in list(cluster.replicas):
        if replica.process.poll() is not None:
            back = cluster.restart(replica)
            _wait(f"HAProxy marks {back.name} up",
                  lambda r=back: cluster.stats()[r.name]["status"] == "UP", 10, back.process)
    return cluster


async def test_a_confirmation_is_executed_once_whichever_replicas_it_reaches(
        whole: Cluster) -> None:
    cluster = whole
    feedback_id = FEEDBACK["acc_other"][0]
    targets = [*cluster.urls, cluster.proxy_url] * 2  # twice each, all at once
    contents: list[str] = []
    async with aiohttp.ClientSession() as session:
        for attempt in range(WRITE_LIMIT):  # within the budget: only single use can refuse
            content = f"{cluster.run} single use {attempt}"
            contents.append(content)
            confirmation = await preview_note(session, cluster.urls[attempt % 3], OTHER_ADMIN,
                                              feedback_id, content)
            answers = await asyncio.gather(*(
                confirm_note(session, url, OTHER_ADMIN, feedback_id, content, confirmation)
                for url in targets))
            done = [a for a in answers if is_done(a)]
            cluster.done[content] += len(done)
            refused = [text_of(a) for a in answers if not is_done(a)]
            assert len(done) == 1, answers
            assert all(a["isError"] is True and "already used" in text_of(a)
                       for a in answers if not is_done(a)), refused
            assert done[0]["structuredContent"]["result"]["note"]["content"] == content
    assert_each_write_applied_once(cluster, "acc_other", feedback_id, contents)


async def test_the_write_limit_is_one_budget_for_every_replica(whole: Cluster) -> None:
    cluster = whole
    feedback_id = FEEDBACK["acc_demo"][1]
    attempts = 3 * WRITE_LIMIT
    # Each of the four targets gets 3 confirmations, fewer than the limit: a limit kept per
    # replica would let all 12 through.
    targets = itertools.cycle([*cluster.urls, cluster.proxy_url])
    async with aiohttp.ClientSession() as session:
        contents = [f"{cluster.run} limit {n}" for n in range(attempts)]
        urls = [next(targets) for _ in contents]
        confirmations = [await preview_note(session, url, WRITER, feedback_id, content)
                         for url, content in zip(urls, contents, strict=True)]
        answers = await asyncio.gather(*(
            confirm_note(session, url, WRITER, feedback_id, content, confirmation)
            for url, content, confirmation in zip(urls, contents, confirmations, strict=True)))
    for content, answer in zip(contents, answers, strict=True):
        cluster.done[content] += is_done(answer)
    refused = [text_of(a) for a in answers if not is_done(a)]
    assert sum(map(is_done, answers)) == WRITE_LIMIT, refused
    assert len(refused) == attempts - WRITE_LIMIT
    limit = f"Not executed. This account's write limit ({WRITE_LIMIT} a minute) is reached"
    assert all(text.startswith(limit) and "with the same token" in text for text in refused)
    assert_each_write_applied_once(cluster, "acc_demo", feedback_id, contents)


# ---- a replica killed under load -----------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    ok: bool
    detail: str


@dataclass(frozen=True)
class Write:
    """A write a caller confirmed through the balancer: its note, whether it was answered done,
    and whether its answer was lost (a confirmation resent with the same token after the
    connection it was on broke; the resend may be told "already used")."""

    content: str
    done: bool
    resent: bool
    answer: str


async def _post(session: aiohttp.ClientSession, url: str, token: str, tool: str,
                arguments: dict[str, Any]) -> tuple[Outcome, dict[str, Any] | None]:
    """One call through the balancer, however it ends; its result when it has one."""
    started = time.monotonic()
    result: dict[str, Any] | None = None
    try:
        async with session.post(f"{url}/retently/mcp", headers=auth(token),
                                json=rpc("tools/call", {"name": tool, "arguments": arguments}),
                                timeout=aiohttp.ClientTimeout(total=10)) as response:
            body = await response.read()
            if response.status == 200:
                result = json.loads(body).get("result")
            ok = result is not None and result.get("isError") is False
            detail = f"HTTP {response.status}: {body[:300]!r}"
    except (aiohttp.ClientError, TimeoutError) as failed:
        ok, detail = False, repr(failed)
    return Outcome(started, time.monotonic(), ok, detail), result


class Load:
    """Callers on connections of their own, through the balancer, from `start()` to `stop()`:
    `readers` read; `writers` preview a note and confirm it, sending the confirmation again with
    the same token while its answer is lost (as a careful client does); each pauses `pause_s`
    between calls."""

    def __init__(self, cluster: Cluster, readers: int, writers: int = 0,
                 pause_s: float = 0.0) -> None:
        self.cluster, self.readers, self.writers = cluster, readers, writers
        self.pause_s = pause_s
        self.reads: list[Outcome] = []
        self.writes: list[Write] = []
        self._stopping = asyncio.Event()
        self._running: asyncio.Future[list[None]] | None = None

    def start(self) -> None:
        self._running = asyncio.gather(*(self._reader() for _ in range(self.readers)),
                                       *(self._writer(n) for n in range(self.writers)))

    async def stop(self) -> None:
        """Stop the callers (again: a no-op) once their calls under way have ended."""
        assert self._running is not None
        self._stopping.set()
        await asyncio.wait_for(self._running, timeout=30)

    def failed_reads(self) -> list[Outcome]:
        return [o for o in self.reads if not o.ok]

    def succeeded(self, since: float) -> int:
        return sum(o.ok and o.started >= since for o in self.reads)

    async def _reader(self) -> None:
        tool, arguments = READ
        async with aiohttp.ClientSession() as session:
            while not self._stopping.is_set():
                outcome, _ = await _post(session, self.cluster.proxy_url, ANALYST, tool,
                                         arguments)
                self.reads.append(outcome)
                await asyncio.sleep(self.pause_s)

    async def _writer(self, n: int) -> None:
        url, feedback_id = self.cluster.proxy_url, writers_feedback(n)
        async with aiohttp.ClientSession() as session:
            for attempt in itertools.count():
                if self._stopping.is_set():
                    return
                content = f"{self.cluster.run} writer {n} note {attempt}"
                arguments = {"id": feedback_id, "content": content}
                _, preview = await _post(session, url, WRITER, "add_note", arguments)
                if preview is None or preview["isError"]:
                    continue  # the preview was lost: nothing to confirm
                arguments["confirmation_token"] = preview["structuredContent"][
                    "confirmation_token"]
                outcome, answer = await _post(session, url, WRITER, "add_note", arguments)
                resent = False
                for _ in range(4):  # its answer lost: the same confirmation again
                    if answer is not None:
                        break
                    await asyncio.sleep(0.1)
                    outcome, answer = await _post(session, url, WRITER, "add_note", arguments)
                    resent = True
                assert answer is not None, outcome.detail
                done = is_done(answer)
                self.cluster.done[content] += done
                self.writes.append(Write(content, done, resent,
                                         "done" if done else text_of(answer)))
                await asyncio.sleep(self.pause_s)


def writers_feedback(n: int) -> str:
    """The feedback response writer `n` adds its notes to (one each, so that none grows long)."""
    return FEEDBACK["acc_demo"][2 + n]


async def until(what: str, ready: Any, timeout_s: float) -> float:
    """Poll `ready()` until true; the time it became so. Fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic()


def served(cluster: Cluster) -> dict[str, int]:
    """Answers (2xx) each replica gave through the balancer so far."""
    return {name: int(state["hrsp_2xx"]) for name, state in cluster.stats().items()}


async def kill_one(cluster: Cluster, load: Load, victim: Replica, after_s: float) -> None:
    """SIGKILL one replica under load: the calls it had under way may fail, nothing else does;
    HAProxy marks it down quickly and the other two carry the load."""
    await until("every replica serves the load", lambda: min(served(cluster).values()) >= 10, 15)
    failed_before = len(load.failed_reads())
    victim.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    down_at = await until("HAProxy marks the killed replica down", lambda: cluster.stats()[
        victim.name]["status"].startswith("DOWN"), 5)
    at_down = served(cluster)
    await asyncio.sleep(after_s)
    # Each caller got an answer from the other two since (waited for: a loaded machine may
    # take longer than `after_s` to serve twenty callers once each).
    await until("the other replicas serve every caller",
                lambda: load.succeeded(since=down_at) >= load.readers, 30)
    at_end = served(cluster)
    failures = load.failed_reads()[failed_before:]
    assert down_at - killed_at < 15 * CHECK_INTERVAL_MS / 1000
    # The calls that failed were under way on the killed replica when it died (HAProxy closes
    # the client's connection): none before the kill, none sent after HAProxy marked it down...
    assert all(o.ended >= killed_at and o.started < down_at for o in failures), failures
    assert len(failures) <= load.readers, failures  # ...at most one per caller...
    # ...and meanwhile the other two served every call (none failed after the mark, above).
    assert at_end[victim.name] == at_down[victim.name]
    assert all(at_end[r.name] > at_down[r.name] for r in cluster.replicas if r is not victim)


async def restart_under_load(cluster: Cluster, victim: Replica) -> None:
    """A killed replica started again on its port: HAProxy marks it up and it serves again."""
    before = served(cluster)[victim.name]
    back = await asyncio.to_thread(cluster.restart, victim)  # the load goes on meanwhile
    await until("HAProxy marks the restarted replica up",
                lambda: cluster.stats()[back.name]["status"] == "UP", 10)
    await until("the restarted replica serves again",
                lambda: served(cluster)[back.name] > before, 10)


def assert_no_write_applied_twice(cluster: Cluster, load: Load) -> None:
    """Each note confirmed "done" is in the upstream once; a note whose confirmation answer was
    lost is there at most once; no other note is; and the audit file holds no more executions
    done than notes written (the upstream drops a repeat carrying the same Idempotency-Key, so
    a confirmation executed twice would show there, as two records for one note)."""
    held = Counter(note for n in range(load.writers)
                   for note in cluster.notes("acc_demo", writers_feedback(n)))
    assert all(count == 1 for count in held.values()), held
    done = {w.content for w in load.writes if w.done}
    lost = {w.content for w in load.writes if w.resent and not w.done}
    assert done <= set(held) <= done | lost
    assert all(w.done or w.resent and "already used" in w.answer for w in load.writes), [
        w for w in load.writes if not w.done]
    assert len(done) <= cluster.audit()["done"] <= len(held)


async def test_reads_go_on_when_a_replica_is_killed_mid_load(cluster: Cluster) -> None:
    load = Load(cluster, readers=20)
    load.start()
    try:
        await kill_one(cluster, load, cluster.replicas[1], after_s=1.0)
    finally:
        await load.stop()  # the replica stays down: a test that needs it starts it again


@pytest.mark.slow
async def test_each_replica_killed_in_turn_under_reads_and_writes(tmp_path: Path) -> None:
    with running_cluster(tmp_path, writes_per_minute=100_000,
                         previews_per_minute=100_000) as cluster:
        # Paced, so that a replica can start again while the load goes on, even on 2 cores.
        load = Load(cluster, readers=30, writers=10, pause_s=0.1)
        load.start()
        try:
            for victim in list(cluster.replicas):
                await asyncio.sleep(2)
                await kill_one(cluster, load, victim, after_s=2.0)
                await restart_under_load(cluster, victim)
            await asyncio.sleep(2)
        finally:
            await load.stop()
        assert sum(w.done for w in load.writes) >= 50
        assert_no_write_applied_twice(cluster, load)


# ---- a replica that dies between sending a write and answering it ---------------------------

class HoldingUpstream:
    """Between a replica and the sandbox: passes everything on, but holds the answer to a note
    the sandbox has just added, so the replica can be killed with the write applied and its
    answer not yet back: the crash every load balancer's caller may meet."""

    def __init__(self, sandbox_url: str) -> None:
        self.sandbox_url = sandbox_url
        self.applied = asyncio.Event()
        self.release = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None

    async def forward(self, request: web.Request) -> web.Response:
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        async with self.session.request(request.method, self.sandbox_url + request.path_qs,
                                        headers=headers, data=await request.read()) as answer:
            body, status = await answer.read(), answer.status
            content_type = answer.headers.get("Content-Type", "application/json")
        if request.method == "POST" and request.path.endswith("/notes"):
            self.applied.set()
            await asyncio.wait_for(self.release.wait(), timeout=20)
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    @asynccontextmanager
    async def serving(self, port: int) -> AsyncIterator[None]:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.forward)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        async with aiohttp.ClientSession() as self.session:
            try:
                yield
            finally:
                self.release.set()
                await runner.cleanup()


@dataclass(frozen=True)
class Crash:
    resent: dict[str, Any]
    """The answer to the confirmation sent again, through HAProxy, after its replica died."""
    audited: list[dict[str, Any]]
    """The audit records of this write, all replicas together."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def crash(cluster: Cluster) -> Crash:
    """The spare replica (same secret, Redis and audit file; not behind HAProxy; its upstream
    through HoldingUpstream) previews a note and is sent its confirmation; once the sandbox has
    applied the note, the replica is killed before it answers. The caller, its answer lost,
    sends the same confirmation again through HAProxy, as a careful client does."""
    doomed = cluster.spare
    assert doomed is not None
    feedback_id, content = FEEDBACK["acc_other"][1], f"{cluster.run} crash"
    arguments = {"id": feedback_id, "content": content}
    upstream = HoldingUpstream(cluster.sandbox_url)
    already = len(cluster.audit_log.read_text().splitlines())
    async with upstream.serving(cluster.spare_upstream_port), aiohttp.ClientSession() as session:
        arguments["confirmation_token"] = await preview_note(
            session, doomed.url, OTHER_ADMIN, feedback_id, content)
        confirming = asyncio.ensure_future(call(
            session, doomed.url, OTHER_ADMIN, "add_note", arguments))
        await asyncio.wait_for(upstream.applied.wait(), timeout=10)
        doomed.process.send_signal(signal.SIGKILL)
        with pytest.raises(aiohttp.ClientConnectionError):
            await asyncio.wait_for(confirming, timeout=10)  # the answer is lost
        resent = await call(session, cluster.proxy_url, OTHER_ADMIN, "add_note", arguments)
    cluster.done[content] += is_done(resent)
    assert cluster.notes("acc_other", feedback_id) == [content]  # applied, and once only
    records = [json.loads(line) for line in cluster.audit_log.read_text().splitlines()[already:]]
    return Crash(resent, [r for r in records if r["tool"] == "add_note"
                          and r["account"] == "acc_other"])


@pytest.mark.asyncio(loop_scope="module")
async def test_a_confirmation_resent_after_its_replica_died_is_not_told_to_redo_it(
        crash: Crash) -> None:
    text = "done" if is_done(crash.resent) else text_of(crash.resent)
    assert is_done(crash.resent) or "may have been applied" in text, text


@pytest.mark.asyncio(loop_scope="module")
async def test_a_write_cut_short_by_a_crash_is_still_in_the_audit_log(crash: Crash) -> None:
    executions = [r for r in crash.audited
                  if r["phase"] == "execute" and r["reason"] != "reused"]
    assert executions, crash.audited
