"""Configuration errors end `serve` with one line each and exit 2, never a traceback: every
invalid setting at once, a list setting that is not JSON, a Redis that cannot be used, an audit
path that cannot be written; a GATEWAY_* variable that names no setting is warned about."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def serve(**environment: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0"], capture_output=True,
        text=True, timeout=60, check=False, env={**clean, **environment})


def test_every_invalid_setting_is_reported_at_once_one_line_each() -> None:
    done = serve(GATEWAY_MAX_BODY_BYTES="1", GATEWAY_MAX_JSON_DEPTH="0",
                 GATEWAY_PUBLIC_URL="http://bad host")

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    named = ["GATEWAY_PUBLIC_URL", "GATEWAY_MAX_BODY_BYTES", "GATEWAY_MAX_JSON_DEPTH"]
    assert len(lines) == len(named)
    assert all(f"({name})" in line for name, line in zip(named, lines, strict=True))


@pytest.mark.parametrize(("environment", "names"), [
    ({"GATEWAY_ALLOWED_ORIGINS": "not json"}, "allowed_origins"),
    ({"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"}, "GATEWAY_REDIS_URL"),
    ({"GATEWAY_REDIS_URL": "nonsense://x"}, "GATEWAY_REDIS_URL"),
    ({"GATEWAY_AUDIT_LOG_PATH": "/proc/no-such-folder/audit.log"}, "GATEWAY_AUDIT_LOG_PATH"),
], ids=["origins not json", "redis unreachable", "redis url unusable", "audit path unusable"])
def test_a_setting_that_cannot_work_is_one_clear_line(environment: dict[str, str],
                                                      names: str) -> None:
    done = serve(**environment)

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    refusals = [line for line in done.stderr.splitlines() if line.startswith("mcp-gateway serve:")]
    assert len(refusals) == 1 and names in refusals[0]


def test_an_unknown_gateway_variable_is_warned_about() -> None:
    done = serve(GATEWAY_PORTT="8080", GATEWAY_MAX_BODY_BYTES="1")

    assert "GATEWAY_PORTT is not a setting" in done.stderr
    assert done.returncode == 2


@pytest.mark.parametrize("url", ["http://", "http://bad host", "http://api.example:99999",
                                 "ftp://api.example"])
def test_an_upstream_url_that_cannot_work_is_refused_at_startup(url: str) -> None:
    """A ${VAR} of service.yaml left empty of its host, or with a space typed in it, used to
    start and then fail every call."""
    done = serve(RETENTLY_API_URL=url)

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "retently/service.yaml:" in done.stderr and "upstream.base_url" in done.stderr
