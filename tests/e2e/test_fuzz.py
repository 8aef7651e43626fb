"""Fuzzing the whole stack: generated JSON-RPC envelopes, headers and tool arguments sent to the
gateway in front of the sandbox upstream, over real HTTP on loopback. Whatever arrives, the
answer is never a 5xx and nothing unhandled reaches the log.

`make test` runs 1,000 cases (the `ci` profile); `make check-all` runs 10,000
(HYPOTHESIS_PROFILE=thorough). Both are derandomised, so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.stack import Stack, running_stack

settings.register_profile("ci", max_examples=1_000, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=10_000, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

TOKENS = ["rtly_mcp_pat_demoadmin_s3cr3t", "rtly_mcp_pat_demoanalyst_s3cr3t",
          "rtly_mcp_pat_demowriter_s3cr3t", "refiner_demo_full", "refiner_key_production"]
METHODS = ["initialize", "ping", "server/discover", "tools/list", "tools/call",
           "resources/list", "resources/read", "resources/templates/list", "prompts/list",
           "prompts/get", "completion/complete", "notifications/initialized",
           "logging/setLevel", "sampling/createMessage"]
TOOLS = ["ping", "list_feedback", "get_feedback", "search_customers", "apply_filter",
         "aggregate_feedback", "add_note", "send_survey", "get-responses", "get-projects",
         "get-form", "nosuch"]
ARGUMENT_NAMES = ["id", "limit", "page", "start_date", "end_date", "group_by", "email",
                  "attributes", "campaign_id", "subscribers", "content", "confirmation_token",
                  "project_uuid", "form_uuid", "page_cursor", "x"]
VERSIONS = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28", "2024-11-05", "1.0"]
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=5),
    max_leaves=20)
arguments = st.dictionaries(st.sampled_from(ARGUMENT_NAMES), json_values, max_size=6) | json_values
params = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(TOOLS), "arguments": arguments}),
    st.fixed_dictionaries({"uri": st.sampled_from([
        "refiner://projects", "refiner://project/x/forms", "refiner://../etc", "x"])}),
    st.fixed_dictionaries({"protocolVersion": st.sampled_from(VERSIONS),
                           "capabilities": json_values,
                           "clientInfo": st.fixed_dictionaries({"name": st.text(max_size=9),
                                                                "version": st.just("1")})}),
    st.fixed_dictionaries({"_meta": st.dictionaries(
        st.sampled_from(["io.modelcontextprotocol/protocolVersion", "progressToken", "x"]),
        json_values, max_size=3)}, optional={"name": st.sampled_from(TOOLS),
                                             "arguments": arguments}),
    json_values)
envelopes = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"])},
    optional={"id": st.none() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=10)
              | st.booleans() | st.floats(allow_nan=False),
              "method": st.sampled_from(METHODS) | st.text(max_size=20),
              "params": params, "result": json_values})
headers = st.fixed_dictionaries({}, optional={
    "Authorization": st.sampled_from([f"Bearer {t}" for t in TOKENS])
    | st.builds(lambda text: f"Bearer {text}", PRINTABLE) | PRINTABLE,
    "MCP-Protocol-Version": st.sampled_from(VERSIONS) | PRINTABLE,
    "Mcp-Method": st.sampled_from(METHODS) | PRINTABLE,
    "Mcp-Name": st.sampled_from(TOOLS) | PRINTABLE,
    "Accept": st.sampled_from(["application/json, text/event-stream", "*/*", "text/html"]),
    "Content-Type": st.sampled_from(["application/json", "text/plain",
                                     "application/json; charset=utf-8"]),
    "traceparent": PRINTABLE, "X-Request-Id": PRINTABLE,
    "Origin": st.sampled_from(["http://localhost:3000", "https://evil.example"]),
}).map(lambda sent: {name: value.strip() for name, value in sent.items()})
"""Header values as an HTTP client can send them (no edge whitespace; raw bytes are the
business of the edge tests, which write to the socket themselves)."""
bodies = envelopes.map(orjson.dumps) | st.binary(max_size=200) | st.lists(
    envelopes, max_size=3).map(orjson.dumps)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The stack runs on its own loop in a thread; hypothesis drives it with a plain client."""
    ready: list[Stack] = []
    started, stop = threading.Event(), threading.Event()

    async def run() -> None:
        async with running_stack() as running:
            ready.append(running)
            started.set()
            while not stop.is_set():  # noqa: ASYNC110 - the test thread sets a threading.Event
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(30), "the stack did not start"
    yield ready[0]
    stop.set()
    thread.join(30)


def test_fuzzed_requests_never_get_a_5xx_or_an_unhandled_error(stack: Stack) -> None:
    statuses: list[int] = []
    service = ["retently", "refiner"]

    with httpx.Client(timeout=30) as client, structlog.testing.capture_logs() as logs:
        @settings(settings.get_profile(PROFILE))
        @given(body=bodies, sent=headers, which=st.sampled_from(service))
        def one(body: bytes, sent: dict[str, str], which: str) -> None:
            answer = client.post(stack.endpoint(which), content=body, headers=sent)
            statuses.append(answer.status_code)
            assert answer.status_code < 500, (answer.status_code, answer.text[:300])

        one()

    unhandled = [e for e in logs if e.get("log_level") in ("error", "critical")
                 or e.get("event") == "unhandled_error"]
    assert unhandled == []
    assert len(statuses) >= 100
    assert len(set(statuses)) > 3  # the cases reached more than one kind of answer
