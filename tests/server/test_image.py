"""The container image, built from the Dockerfile and run for real with podman (slow: only
`make check-all` runs it).

On machines without a Docker engine or a reachable image registry (as here), the base image is
made from Debian packages with debootstrap (its root filesystem is kept as
build/image/debian-python-bookworm.tar, and the imported image in podman's store, so only the
first run pays for it), and podman builds the Dockerfile unchanged over it, with its layer cache
(the images a rebuild replaces are removed, not left dangling). Then the image runs as a
deployment runs it: uid 10001, a read-only root filesystem, a read-only spec folder at /specs, on
the host's network on free loopback ports; and the demo overlay of deploy/kubernetes is played
with `podman kube play`. Each test skips, saying why, where podman or debootstrap is missing or
cannot run containers here.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.spec.loader import load_tree
from tests.server.test_deploy import DEMO, Doc, build, containers, pod_template
from tests.support import MCP_HEADERS, REPO, RETENTLY_ADMIN, rpc

pytestmark = pytest.mark.slow

CACHE = REPO / "build" / "image"
BASE_IMAGE = "localhost/debian-python:bookworm"
BASE_TAR = CACHE / "debian-python-bookworm.tar"
IMAGE = "localhost/mcp-gateway:check"
BUILD_STAGE = "localhost/mcp-gateway:check-build"
"""The build stage, tagged so that podman's layer cache for it is not a dangling image."""
ENGINE_CONF = "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n"
BOOTSTRAP_TIMEOUT_S = 1200
BUILD_TIMEOUT_S = 1200
START_TIMEOUT_S = 90
REFINER_FULL = "refiner_demo_full"
SERVICES = ("retently", "refiner")
PLAYED_KINDS = frozenset({"ConfigMap", "Secret", "Deployment"})
"""What `podman kube play` runs; Services, autoscalers, budgets, policies and the Redis
StatefulSet are validated offline (test_deploy.py) instead."""


@dataclass(frozen=True)
class Podman:
    env: dict[str, str]

    def run(self, *argv: str, timeout: float = 120, check: bool = True,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        finished = subprocess.run(["podman", "--runtime", "runc", *argv],  # noqa: S603, S607
                                  env=self.env, capture_output=True, timeout=timeout,
                                  input=stdin, check=False)
        if check and finished.returncode != 0:
            pytest.fail(f"podman {' '.join(argv[:3])} ... failed ({finished.returncode}): "
                        f"{finished.stderr.decode(errors='replace')[-3000:]}")
        return finished

    def text(self, *argv: str, timeout: float = 120) -> str:
        return self.run(*argv, timeout=timeout).stdout.decode().strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def debian_mirror() -> str:
    """The first Debian mirror apt uses here (deb822 sources, or the one-line format)."""
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in sources.read_text(encoding="utf-8").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    if listing.is_file():
        for line in listing.read_text(encoding="utf-8").splitlines():
            if line.startswith("deb ") and "security" not in line:
                return next(word for word in line.split()[1:] if "://" in word)
    return "http://deb.debian.org/debian"


def make_base_tar() -> None:
    """debootstrap a Debian bookworm with Python 3.11, made to look like python:3.11-slim."""
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    finished = subprocess.run(  # noqa: S603 - fixed arguments
        ["debootstrap", "--variant=minbase",  # noqa: S607
         "--include=python3,python3-venv,python3-pip,ca-certificates", "bookworm", str(rootfs),
         debian_mirror()], capture_output=True, text=True, timeout=BOOTSTRAP_TIMEOUT_S,
        check=False)
    if finished.returncode != 0:
        pytest.skip(f"debootstrap could not make the base image: {finished.stderr[-500:]}")
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        link = rootfs / "usr/local/bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    partial = BASE_TAR.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        archive.add(rootfs, arcname=".")
    partial.rename(BASE_TAR)
    shutil.rmtree(rootfs)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (make check-all installs podman, "
                    "runc and debootstrap with apt-get)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(ENGINE_CONF, encoding="utf-8")
    engine = Podman({**os.environ, "CONTAINERS_CONF": str(conf)})
    probe = engine.run("info", check=False, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run here: {probe.stderr.decode(errors='replace')[-500:]}")
    return engine


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The project's image, built from the Dockerfile over the debootstrapped base."""
    if podman.run("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        if not BASE_TAR.is_file():
            if shutil.which("debootstrap") is None:
                pytest.skip("debootstrap is not installed (make check-all installs it)")
            CACHE.mkdir(parents=True, exist_ok=True)
            make_base_tar()
        podman.run("import", str(BASE_TAR), BASE_IMAGE, timeout=600)
    before = {tag: image_id(podman, tag) for tag in (BUILD_STAGE, IMAGE)}
    for target in (["--target", "build", "-t", BUILD_STAGE], ["-t", IMAGE]):
        podman.run("build", "--format", "docker", "--pull=never", "--network", "host",
                   "--build-arg", f"BASE={BASE_IMAGE}", "-v", "/etc/ssl/certs:/etc/ssl/certs:ro",
                   *target, str(REPO), timeout=BUILD_TIMEOUT_S)
    for tag, previous in before.items():  # what changed sources left behind: 400 MB each
        if previous and previous != image_id(podman, tag):
            podman.run("rmi", previous, check=False)
    return IMAGE


def image_id(podman: Podman, tag: str) -> str | None:
    found = podman.run("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return found.stdout.decode().strip() if found.returncode == 0 else None


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as failed:
        return failed.code, json.loads(failed.read())


def post(url: str, message: dict[str, Any], token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(message).encode(), headers={  # noqa: S310
        **MCP_HEADERS, "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        result: dict[str, Any] = json.loads(answer.read())
    return result


def wait_until_ready(base: str, podman: Podman, containers_: list[str]) -> dict[str, Any]:
    """/readyz's answer once it is 200 (the containers' logs when it never is)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            status, body = get(base + "/readyz")
            if status == 200:
                return body
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    logs = "\n".join(podman.run("logs", name, check=False).stderr.decode(errors="replace")
                     + podman.run("logs", name, check=False).stdout.decode(errors="replace")
                     for name in containers_)
    pytest.fail(f"{base}/readyz never answered 200 within {START_TIMEOUT_S} s:\n{logs[-4000:]}")


def shipped_tools() -> dict[str, int]:
    registry = load_tree(REPO / "tool_specs", {})
    return {s.name: len(s.tools) for s in registry.services if s.name in SERVICES}


def check_gateway(base: str, sandbox: str) -> None:
    """What the image must answer: health, readiness with both services, and tools/list with a
    demo token checked by the sandbox's token introspection."""
    assert get(base + "/healthz") == (200, {"status": "ok"})
    status, ready = get(base + "/readyz")
    assert status == 200
    assert ready["services"] == shipped_tools()
    listed = post(base + "/retently/mcp", rpc("tools/list"), RETENTLY_ADMIN)
    assert len(listed["result"]["tools"]) == shipped_tools()["retently"]
    listed = post(base + "/refiner/mcp", rpc("tools/list"), REFINER_FULL)
    assert len(listed["result"]["tools"]) == shipped_tools()["refiner"]
    status, _ = get(sandbox + "/v1/")  # the sandbox answers (401 without its API key)
    assert status == 401


@pytest.fixture
def names(podman: Podman) -> Iterator[list[str]]:
    """Containers a test starts; removed at its end whatever happened."""
    started: list[str] = []
    yield started
    for name in started:
        podman.run("rm", "-f", "-t", "0", name, check=False)


def test_the_image_serves_as_uid_10001_on_a_read_only_root(
        podman: Podman, image: str, names: list[str], tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    for service in SERVICES:
        shutil.copytree(REPO / "tool_specs" / service, specs / service)
    gateway_port, sandbox_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{sandbox_port}"
    gateway, sandbox = f"mcp-gateway-{uuid.uuid4().hex[:8]}", f"mcp-sandbox-{uuid.uuid4().hex[:8]}"
    names.extend([gateway, sandbox])
    common = ["run", "-d", "--pull=never", "--network", "host", "--read-only", "--user", "10001"]
    podman.run(*common, "--name", sandbox, image, "sandbox", "--port", str(sandbox_port))
    podman.run(*common, "--name", gateway, "-v", f"{specs}:/specs:ro",
               "-e", "GATEWAY_LOOPBACK_ONLY=true", "-e", f"GATEWAY_PORT={gateway_port}",
               "-e", f"RETENTLY_API_URL={upstream}", "-e", f"REFINER_API_URL={upstream}",
               "-e", f"REFINER_AUTH_URL={upstream}", image)
    base = f"http://127.0.0.1:{gateway_port}"

    wait_until_ready(base, podman, names)

    check_gateway(base, upstream)
    assert podman.text("exec", gateway, "id", "-u") == "10001"
    denied = podman.run("exec", gateway, "touch", "/opt/mcp-gateway/x", check=False)
    assert denied.returncode != 0
    assert b"Read-only file system" in denied.stderr
    denied = podman.run("exec", gateway, "touch", "/specs/retently/x", check=False)
    assert b"Read-only file system" in denied.stderr
    assert podman.run("healthcheck", "run", gateway, check=False).returncode == 0
    podman.run("stop", "-t", "10", gateway)
    assert podman.text("inspect", gateway, "--format", "{{.State.ExitCode}}") == "0"


def playable(documents: list[Doc], image: str, gateway_port: int, sandbox_port: int,
             redis_url: str | None) -> list[Doc]:
    """The rendered overlay as `podman kube play` runs it here: only the kinds it plays, on the
    host's network (loopback addresses and free ports), with the image built here."""
    upstream = f"http://127.0.0.1:{sandbox_port}"
    played = [d for d in documents if d["kind"] in PLAYED_KINDS]
    for document in played:
        template = pod_template(document)
        if template is not None:
            template["spec"]["hostNetwork"] = True
            port = sandbox_port if document["metadata"]["name"] == "mcp-gateway-sandbox" \
                else gateway_port
            for container in containers(document):
                container["image"] = image
                container["imagePullPolicy"] = "Never"
                container.pop("ports")  # podman maps ports only off the host's network
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    for action in ("httpGet", "tcpSocket"):
                        if action in container.get(probe, {}):
                            container[probe][action]["port"] = port
        if document["kind"] == "ConfigMap" and document["metadata"]["name"] == \
                "mcp-gateway-config":
            data = document["data"]
            data.update(GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(gateway_port),
                        RETENTLY_API_URL=upstream, REFINER_API_URL=upstream,
                        REFINER_AUTH_URL=upstream)
            if redis_url is None:
                data.pop("GATEWAY_REDIS_URL")
            else:
                data["GATEWAY_REDIS_URL"] = redis_url
        if document["metadata"]["name"] == "mcp-gateway-sandbox":
            containers(document)[0]["args"] = ["sandbox", "--host", "127.0.0.1", "--port",
                                               str(sandbox_port)]
    return played


@pytest.fixture
def redis_url() -> Iterator[str | None]:
    """A Redis on loopback for the played gateway, when redis-server is installed."""
    if shutil.which("redis-server") is None:
        yield None
        return
    from tests.writes.test_redis_limits import running_redis

    with running_redis() as (url, _):
        yield url


def test_the_demo_overlay_plays_with_podman(podman: Podman, image: str, tmp_path: Path,
                                            redis_url: str | None) -> None:
    gateway_port, sandbox_port = free_port(), free_port()
    played = tmp_path / "demo.yaml"
    documents = playable(build(DEMO), image, gateway_port, sandbox_port, redis_url)
    # podman 4.3 stores a played Secret as YAML but reads the Secret of a secretKeyRef as a JSON
    # map of base64 values: the Secrets are created apart, so, and the rest is played.
    secrets = {d["metadata"]["name"]: {k: base64.b64encode(v.encode()).decode()
                                       for k, v in d["stringData"].items()}
               for d in documents if d["kind"] == "Secret"}
    played.write_text(yaml.safe_dump_all([d for d in documents if d["kind"] != "Secret"]),
                      encoding="utf-8")
    pods = [f"{d['metadata']['name']}-pod-0" for d in documents if d["kind"] == "Deployment"]
    base = f"http://127.0.0.1:{gateway_port}"
    for pod in pods:  # what an interrupted run left behind
        podman.run("pod", "rm", "-f", pod, timeout=60, check=False)
    for secret in secrets:
        podman.run("secret", "rm", secret, timeout=60, check=False)
    try:
        for name, secret in secrets.items():
            podman.run("secret", "create", name, "-", stdin=json.dumps(secret).encode())
        podman.run("kube", "play", str(played), timeout=300)
        pods = podman.text("pod", "ps", "--format", "{{.Name}}").split()
        names = [n for n in podman.text("ps", "--format", "{{.Names}}").split()
                 if any(n.startswith(p) for p in pods) and not n.endswith("-infra")]
        ready = wait_until_ready(base, podman, names)

        check_gateway(base, f"http://127.0.0.1:{sandbox_port}")
        redis = ready["components"]["redis"]
        assert redis == ({"ok": True} if redis_url else
                         {"ok": True, "detail": "not configured: limits are per process"})
        gateway = next(n for n in names if n.startswith("mcp-gateway-pod"))
        assert podman.text("exec", gateway, "id", "-u") == "10001"
        assert podman.text("inspect", gateway, "--format", "{{.HostConfig.ReadonlyRootfs}}") \
            == "true"
        mounts = json.loads(podman.text("inspect", gateway, "--format", "{{json .Mounts}}"))
        specs = {m["Destination"]: m for m in mounts if m["Destination"].startswith("/specs")}
        assert sorted(specs) == [f"/specs/{s}" for s in sorted(SERVICES)]
        assert all(m["RW"] is False for m in specs.values())
    finally:
        podman.run("kube", "down", str(played), timeout=300, check=False)
        for pod in pods:  # what a failed play leaves behind
            podman.run("pod", "rm", "-f", pod, timeout=60, check=False)
        for secret in secrets:  # podman 4.3's kube down leaves them
            podman.run("secret", "rm", secret, timeout=60, check=False)
