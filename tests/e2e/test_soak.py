"""The soak (bench/soak.py): tool calls through the gateway, as separate processes on loopback, in
front of an upstream that fails 1% of the time in the ways real ones do. Every tool error must be
explained by the fault the upstream injected into that very call, nothing else may fail, and the
gateway's memory must stay flat. The full soak (100,000 calls) runs in `make check-all`; a
bounded one in `make test`.

The first tests pin the judging itself, so a soak that reports nothing unexpected has been shown
able to report something.
"""

from __future__ import annotations

import os

import orjson
import pytest

from bench.soak import FAULTS, Answered, SoakReport, judge, run_soak, verdict
from tests.support import unmeasured_environment

BOUNDED_SEED = 9
"""The seed whose first 3,000 upstream requests get every kind of fault (30 in all)."""


def answer(call: int, result: dict[str, object]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": call, "result": result})


def tool_error(text: str) -> dict[str, object]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def test_a_result_for_the_call_is_ok_and_anything_else_is_a_problem() -> None:
    good = answer(7, {"content": [{"type": "text", "text": '{"n": 7}'}], "isError": False})
    assert judge(7, 200, good) == Answered(7)
    other_item = answer(7, {"content": [], "structuredContent": {"n": 8}, "isError": False})
    assert judge(7, 200, other_item).problem is not None
    assert judge(8, 200, good).problem is not None  # the answer to another call
    assert judge(7, 502, b"Bad Gateway").problem == "HTTP 502: b'Bad Gateway'"
    rpc_error = orjson.dumps({"jsonrpc": "2.0", "id": 7, "error": {"code": -32603,
                                                                    "message": "x"}})
    assert judge(7, 200, rpc_error).problem is not None
    assert judge(7, 200, b"<html>").problem is not None
    assert judge(7, 200, answer(7, tool_error("boom"))) == Answered(7, tool_error="boom")


def test_a_tool_error_is_expected_only_when_the_fault_behind_it_explains_it() -> None:
    html = "The upstream answered HTTP 200 with text/html instead of JSON; retry later."
    failed = "Upstream answered HTTP 503: Unavailable. The upstream service failed; retry later."
    assert verdict(Answered(1, tool_error=html), {"1": ["html"]}) == "html"
    assert verdict(Answered(1, tool_error=html), {}) is None  # no fault at all
    assert verdict(Answered(1, tool_error=html), {"1": ["503", "ok"]}) is None  # last was good
    assert verdict(Answered(1, tool_error=html), {"1": ["malformed"]}) is None  # other words
    assert verdict(Answered(1, tool_error=failed), {"1": ["503", "503", "503"]}) == "503"
    # A retried fault is told only when no attempt succeeded.
    assert verdict(Answered(1, tool_error=failed), {"1": ["ok", "503"]}) is None
    # A slow answer is still an answer.
    assert verdict(Answered(1, tool_error="did not answer"), {"1": ["slow"]}) is None
    assert verdict(Answered(1), {"1": ["503", "ok"]}) == "ok"
    assert verdict(Answered(1, problem="HTTP 500"), {"1": ["503"]}) is None


def test_rss_is_flat_only_within_ten_percent_of_the_warm_up_sample() -> None:
    report = SoakReport(100, 1, 0.01, 1, rss_kib=[(0, 50_000), (10, 80_000), (100, 88_000)])
    assert report.rss_warm_kib == 80_000 and report.rss_end_kib == 88_000
    assert report.rss_growth == pytest.approx(0.10)
    report.rss_kib.append((100, 88_100))
    assert report.rss_growth > 0.10


def check(report: SoakReport, calls: int) -> None:
    print(report.summary())  # the numbers, for `pytest -s` and the failure report
    assert report.unexpected == 0, report.examples
    assert report.ok + report.expected_errors == calls
    assert report.gateway_log_errors == 0
    assert report.faults_injected > 0  # the soak did inject faults
    assert report.upstream_requests > calls  # and the gateway retried some
    assert report.expected_errors > 0  # and some could only be told
    assert report.expected_errors <= report.faults_injected
    assert len(report.rss_kib) >= 3 and report.rss_warm_kib > 0
    assert report.rss_end_kib <= 1.10 * report.rss_warm_kib, report.rss_kib


def test_a_bounded_soak_has_no_unexpected_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in set(os.environ) - set(unmeasured_environment()):  # its processes load, untraced
        monkeypatch.delenv(name)
    report = run_soak(3_000, 20, 0.01, BOUNDED_SEED, deadline_s=120)
    check(report, 3_000)
    assert set(report.faults) == set(FAULTS)


@pytest.mark.slow
def test_the_full_soak_of_100000_calls_has_no_unexpected_errors_and_flat_rss() -> None:
    report = run_soak(100_000, 50, 0.01, seed=1)
    check(report, 100_000)
    assert set(report.faults) == set(FAULTS)
    assert min(report.faults.values()) >= 50  # every kind, many times over
    assert 0.008 <= report.faults_injected / report.upstream_requests <= 0.012
