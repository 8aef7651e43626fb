"""Pruned decoding and one-pass pages end to end: every shipped tool answered by one upstream
request whose rows its selection reads in part (or takes whole) gives the SDK client the same
result, byte for byte, with the compiled loops on (a page of rows made in one pass over the
answer's bytes, any other answer decoded pruned to what the tool reads) and off (decoded
whole), in both protocol eras. (Tools that collect pages decode each page whole.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway import native
from gateway.calls import pages, pipeline
from gateway.spec import reads
from tests.e2e.stack import MODES, Stack, mcp_client, running_stack
from tests.support import REFINER_FULL, RETENTLY_ADMIN

PRODUCTION = "a1b2c3d0-1111-11ee-8c3a-3f2b1e2d4c5a"
# The shipped tools answered by one request whose rows they read in part, or take whole.
CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "retently": [("list_feedback", {"limit": 50}), ("list_recent_feedback", {"days": 365}),
                 ("list_outbox", {}), ("list_integrations", {}), ("list_users", {}),
                 ("list_customers", {}), ("list_companies", {}), ("list_saved_filters", {}),
                 ("list_suppressed_emails", {}), ("get_trends", {})],
    "refiner": [("get-responses", {"project_uuid": PRODUCTION, "page_length": 500}),
                ("get-forms", {"project_uuid": PRODUCTION})],
}
# Made in one pass (gateway/spec/pages.py): plain fields over one list's rows (get-responses:
# and one object's plain fields, with extra entries after), or its items taken whole where
# the answer is large enough to pay (list_customers; the others' are a few kilobytes).
PAGES = {"list_feedback", "list_recent_feedback", "list_outbox", "list_integrations",
         "list_users", "get-responses", "list_customers"}
TOKENS = {"retently": RETENTLY_ADMIN, "refiner": REFINER_FULL}


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack() as running:
        yield running


async def results(stack: Stack, mode: str, paged: list[str]) -> tuple[list[str], set[str]]:
    """What the client is shown of each call, and which calls were made in one pass."""
    shown: list[str] = []
    made: set[str] = set()
    for service, calls in CALLS.items():
        async with mcp_client(stack.endpoint(service), TOKENS[service], mode) as client:
            for tool, arguments in calls:
                before = len(paged)
                result = await client.call_tool(tool, arguments)
                assert result.is_error is False, (tool, result.content)
                shown.append(json.dumps([tool, result.structured_content,
                                         [block.model_dump() for block in result.content]]))
                if len(paged) > before:
                    made.add(tool)
    return shown, made


@pytest.mark.skipif(not native.built(), reason="pruning needs the compiled loops, which "
                    "tests/native/test_build.py requires wherever a compiler is at hand")
@pytest.mark.parametrize("mode", MODES)
async def test_pruned_and_whole_answers_give_the_same_results(
        stack: Stack, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pruned: list[str] = []
    paged: list[str] = []
    decode, shape = reads.PrunedDecoder.__call__, pages.shaped_page

    def counted(self: reads.PrunedDecoder, raw: bytes) -> Any:
        body = decode(self, raw)  # NotPruned passes through: decoded whole
        pruned.append("pruned")
        return body

    def made(answer: Any, *args: Any) -> Any:
        result = shape(answer, *args)
        if result is not None:  # None: declined, and decoded as any other answer
            paged.append(answer.page.path[-1])
        return result

    monkeypatch.setattr(reads.PrunedDecoder, "__call__", counted)
    monkeypatch.setattr(pipeline, "shaped_page", made)
    before = native.rows() is not None
    try:
        native.use_native(True)
        with_c, in_one_pass = await results(stack, mode, paged)
        assert in_one_pass == PAGES
        pruned_with_c = len(pruned)
        native.use_native(False)
        whole, in_one_pass = await results(stack, mode, paged)
    finally:
        native.use_native(before)
    assert in_one_pass == set() and len(pruned) == pruned_with_c  # neither without C
    assert with_c == whole
    assert '"items": [{' in "\n".join(whole)  # rows came back, not only empty pages
