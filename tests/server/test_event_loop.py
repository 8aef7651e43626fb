"""The serving process's event loop: uvloop when installed (the `fast` extra), the standard
library's when asked for or when uvloop is missing, and a refusal to start when uvloop is asked
for but missing. The loop chosen is logged at startup, and so are the row loops (compiled or
pure Python, GATEWAY_NATIVE_ROWS)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys

import orjson
import pytest

from gateway import native
from gateway.errors import StartupError
from gateway.server.loops import loop_factory
from tests.support import first_line

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None
needs_uvloop = pytest.mark.skipif(not HAS_UVLOOP, reason="the fast extra is not installed")


def _kind(factory: object) -> str:
    loop = factory()  # type: ignore[operator]
    try:
        return type(loop).__module__.split(".")[0]
    finally:
        loop.close()


@needs_uvloop
def test_auto_and_uvloop_choose_uvloop_when_it_is_installed() -> None:
    for choice in ("auto", "uvloop"):
        factory, name = loop_factory(choice)
        assert name == "uvloop"
        assert _kind(factory) == "uvloop"


def test_asyncio_is_the_standard_loop_even_with_uvloop_installed() -> None:
    factory, name = loop_factory("asyncio")
    assert name == "asyncio"
    assert _kind(factory) == "asyncio"
    assert factory is asyncio.new_event_loop


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory("auto") == (asyncio.new_event_loop, "asyncio")
    with pytest.raises(StartupError, match=r"mcp-gateway\[fast\]"):
        loop_factory("uvloop")


@pytest.mark.parametrize(("choice", "native_rows"), [
    pytest.param("auto", "true", marks=needs_uvloop), ("asyncio", "false")])
def test_serve_logs_the_loop_and_the_row_loops_it_runs(
        choice: str, native_rows: str, processes: list[subprocess.Popen[str]]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", "0"],
        env={**clean, "GATEWAY_LOG_JSON": "true", "GATEWAY_EVENT_LOOP": choice,
             "GATEWAY_NATIVE_ROWS": native_rows},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    processes.append(process)
    assert first_line(process).startswith("mcp-gateway ")
    assert process.stderr is not None
    events: list[dict[str, str]] = []
    while not any(e.get("event") == "event_loop" for e in events):
        line = process.stderr.readline()
        assert line, "serve ended without logging its event loop"
        events.append(orjson.loads(line))
    logged = next(e for e in events if e.get("event") == "event_loop")
    assert logged["loop"] == ("uvloop" if choice == "auto" else "asyncio")
    rows = next(e for e in events if e.get("event") == "row_loops")  # logged before the loop
    assert rows["loops"] == ("c" if native_rows == "true" and native.built() else "python")
