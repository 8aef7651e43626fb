"""The package as a user gets it: built from the files the Dockerfile copies, installed (not
editable) into a fresh virtual environment, and run from a folder outside the checkout. The
shipped specs and the sandbox's fixtures must come from inside the installed package.

One environment serves the whole session. pip installs the dependencies from its index and its
cache (nothing is compiled to bytecode, to save time); every step has a time bound.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import SHIPPED_SPECS
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree
from tests.support import REPO, first_line

ROOT = REPO
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "gateway", "sandbox",
           "tool_specs", "fixtures/sandbox")
"""What building the package needs, and all the image's build stage gets."""
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 60
ADMIN = "rtly_mcp_pat_demoadmin_s3cr3t"


@dataclass(frozen=True)
class Installed:
    bin: Path
    site: Path
    """The environment's site-packages: where the gateway must run from."""
    elsewhere: Path
    """A folder that is neither the checkout nor the environment: the working directory."""
    env: dict[str, str]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "mcp-gateway"), *argv], cwd=self.elsewhere,  # noqa: S603
                              env=self.env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S, check=False)

    def start(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(self.bin / "mcp-gateway"), *argv], cwd=self.elsewhere,  # noqa: S603
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)


def copy_sources(target: Path) -> None:
    for name in SOURCES:
        source, copy = ROOT / name, target / name
        if source.is_dir():
            shutil.copytree(source, copy,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)


def clean_environment() -> dict[str, str]:
    """The caller's environment without anything that would point Python at the checkout or
    change what the gateway serves."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "RETENTLY_API_URL",
               "REFINER_API_URL", "REFINER_AUTH_URL", "MCP_GATEWAY_CONFORMANCE"}
    return {k: v for k, v in os.environ.items()
            if k not in dropped and not k.startswith("GATEWAY_")}


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    copy_sources(root / "source")
    environment = root / "venv"
    venv.create(environment, with_pip=False)  # the running pip installs into it (--python)
    python = environment / "bin" / "python"
    finished = subprocess.run(  # noqa: S603 - pip, on our own copy of the sources
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--disable-pip-version-check", "--no-compile", "--prefer-binary", str(root / "source")],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False,
        env=clean_environment(), cwd=root)
    assert finished.returncode == 0, finished.stderr[-3000:]
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = subprocess.run([str(python), "-c", where], capture_output=True, text=True,  # noqa: S603
                          check=True, timeout=RUN_TIMEOUT_S, cwd=root).stdout.strip()
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return Installed(environment / "bin", Path(site), elsewhere, clean_environment())




def post(url: str, message: dict[str, Any], token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(message).encode(), headers={  # noqa: S310 - loopback
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=RUN_TIMEOUT_S) as answer:  # noqa: S310
        result: dict[str, Any] = json.loads(answer.read())
    return result


def test_the_install_builds_the_compiled_row_loops(installed: Installed) -> None:
    """The built package carries gateway/native/_rows (compiled from the C source by the
    install, not copied: the copy of the sources leaves out every built .so)."""
    probe = subprocess.run(  # noqa: S603
        [str(installed.bin / "python"), "-c", "from gateway import native; "
         "print(native.built(), native.rows().__file__)"],
        cwd=installed.elsewhere, env=installed.env, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S, check=False)
    assert probe.returncode == 0, probe.stderr[-2000:]
    built, where = probe.stdout.split()
    assert built == "True"
    assert Path(where).parent == installed.site / "gateway" / "native"


def test_the_installed_gateway_runs_from_its_own_package(installed: Installed) -> None:
    probe = subprocess.run(  # noqa: S603
        [str(installed.bin / "python"), "-c", "import gateway, sandbox; "
         "print(gateway.__file__); print(sandbox.__file__)"],
        cwd=installed.elsewhere, env=installed.env, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S, check=True)

    modules = [Path(line) for line in probe.stdout.splitlines()]
    assert modules == [installed.site / "gateway" / "__init__.py",
                       installed.site / "sandbox" / "__init__.py"]


def checkout() -> Registry:
    return load_tree(SHIPPED_SPECS, {})


def test_check_validates_the_specs_shipped_inside_the_package(installed: Installed) -> None:
    services = checkout().services

    finished = installed.run("check")

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == (f"ok: {len(services)} service(s), "
                               f"{sum(len(s.tools) for s in services)} tool(s) in "
                               f"{installed.site / 'gateway' / 'tool_specs'}\n")


def test_tools_lists_every_service_of_the_checkout(installed: Installed) -> None:
    services = checkout().services

    finished = installed.run("tools")

    headers = [line for line in finished.stdout.splitlines() if not line.startswith(" ")]
    assert finished.returncode == 0, finished.stderr
    assert headers == [f"{s.name}  {s.spec.endpoint}  ({len(s.tools)} tools)" for s in services]
    assert {"retently", "refiner"} <= {s.name for s in services}


def test_the_sandbox_serves_its_fixtures(installed: Installed,
                                         processes: list[subprocess.Popen[str]]) -> None:
    sandbox = installed.start("sandbox", "--port", "0")
    processes.append(sandbox)
    found = re.fullmatch(r"sandbox upstream on (http://127\.0\.0\.1:\d+)", first_line(sandbox))
    assert found

    request = urllib.request.Request(found[1] + "/v1/", headers={  # noqa: S310 - loopback
        "Authorization": "Bearer refiner_key_production"})
    with urllib.request.urlopen(request, timeout=RUN_TIMEOUT_S) as answer:  # noqa: S310
        project = json.loads(answer.read())

    assert project["project_name"] == "Production"
    sandbox.send_signal(signal.SIGINT)
    sandbox.communicate(timeout=RUN_TIMEOUT_S)
    assert sandbox.returncode == 0


def test_the_demo_answers_an_mcp_call_through_the_sandbox(
        installed: Installed, processes: list[subprocess.Popen[str]]) -> None:
    demo = installed.start("demo", "--port", "0", "--sandbox-port", "0")
    processes.append(demo)
    found = re.search(r"gateway on (http://127\.0\.0\.1:\d+),", first_line(demo))
    assert found

    answer = post(found[1] + "/retently/mcp", {
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "get_score", "arguments": {"metric": "NPS"}}}, ADMIN)

    result = answer["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["metricsType"] == "NPS"
    assert result["structuredContent"]["totalResponses"] > 0
    demo.send_signal(signal.SIGINT)
    _, err = demo.communicate(timeout=RUN_TIMEOUT_S)
    assert demo.returncode == 0
    assert "Traceback" not in err


def copied_by_the_image() -> tuple[list[str], list[str]]:
    """What the Dockerfile's build stage copies from the context, and what .dockerignore lets
    into the context."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    build_stage = dockerfile.split("\nFROM ")[1]
    copied = [source.rstrip("/") for line in build_stage.splitlines()
              if line.startswith("COPY ") and "--from" not in line
              for source in line.split()[1:-1]]
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    return copied, allowed


def test_the_image_builds_from_exactly_the_sources_installed_here() -> None:
    copied, allowed = copied_by_the_image()

    assert sorted(copied) == sorted(SOURCES)
    assert sorted(allowed) == sorted(SOURCES)
