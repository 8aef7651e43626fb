"""What the case runner says differed between a test case and what the gateway did: one table of
cases over the pure checks, each an outcome and the sentences expected for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gateway.spec.case_checks import Outcome, differences, preview_token, subset_mismatch
from gateway.spec.cases import ToolTestCase

BASE = "https://api.example.test/v2"


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    body: bytes | None = None


def answer(structured: Any = None, text: str = "", is_error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return {"jsonrpc": "2.0", "id": 1, "result": result}


def refused(code: int, message: str = "Invalid params") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}


GET_ITEM = Request("GET", f"{BASE}/items/7?page=1&tag=a&tag=b")
POST_ITEM = Request("POST", f"{BASE}/items/7", b'{"tags":["a"]}')

CASES: list[tuple[str, dict[str, Any], bool, Outcome, list[str]]] = [
    ("a matching call", {"expect_request": {"method": "GET", "path": "/items/7",
                                            "query": {"page": "1", "tag": ["a", "b"]}},
                         "expect_calls": 1, "expect": {"structured": {"id": "7"}}},
     False, Outcome(200, answer({"id": "7", "n": 1}), [GET_ITEM]), []),
    ("the request's method, path, query and body",
     {"expect_request": {"method": "PUT", "path": "/items/8", "query": {"page": "2"},
                         "body": {"tags": ["b"]}}},
     False, Outcome(200, answer({}), [POST_ITEM]),
     ["expect_request.method: expected PUT, sent POST",
      "expect_request.path: expected /v2/items/8, sent /v2/items/7",
      'expect_request.query: expected {"page":"2"}, sent {}',
      'expect_request.body: expected {"tags":["b"]}, sent {"tags":["a"]}']),
    ("a body that is not JSON", {"expect_request": {"body": {"a": 1}}},
     False, Outcome(200, answer({}), [Request("POST", BASE, b"a=1")]),
     ['expect_request.body: expected {"a":1}, sent a=1']),
    ("no request at all", {"expect_request": {"method": "GET"}, "expect_calls": 1},
     False, Outcome(200, answer({}), []),
     ["expect_calls: expected 1 upstream request(s), 0 sent",
      "expect_request: no upstream request was sent"]),
    ("a write that changed something without confirmation", {},
     True, Outcome(200, answer({}), [GET_ITEM, POST_ITEM]),
     [f"the preview sent POST {BASE}/items/7: a preview may only read"]),
    ("a preview that changed something before the confirmation", {"confirm": True},
     True, Outcome(200, answer({}), [POST_ITEM, POST_ITEM], answer({}), 1),
     [f"the preview sent POST {BASE}/items/7: a preview may only read"]),
    ("isError, text_contains and text_excludes",
     {"expect": {"isError": True, "text_contains": ["404"], "text_excludes": ["secret"]}},
     False, Outcome(200, answer(text="a secret"), []),
     ["isError: expected true, got false: a secret", "text_contains: '404' is not in the text: "
      "a secret", "text_excludes: 'secret' is in the text"]),
    ("a structured result that is absent", {"expect": {"structured": {"id": "7"}}},
     False, Outcome(200, answer(), []), ["structured: the result has no structuredContent"]),
    ("an HTTP failure", {}, False, Outcome(500, "Internal Server Error", []),
     ["HTTP 500 instead of a result: Internal Server Error"]),
    ("a refusal instead of a result", {}, False, Outcome(400, refused(-32602), []),
     ["JSON-RPC error -32602 instead of a result: Invalid params"]),
    ("an answer without a result", {}, False, Outcome(200, {"jsonrpc": "2.0"}, []),
     ['no result in the answer: {"jsonrpc":"2.0"}']),
    ("the refusal expected", {"protocol_error": -32602}, False,
     Outcome(400, refused(-32602), []), []),
    ("another refusal", {"protocol_error": -32602}, False,
     Outcome(400, refused(-32600, "Invalid request"), []),
     ["protocol_error: expected JSON-RPC error -32602, got -32600: Invalid request"]),
    ("a refusal after an upstream request", {"protocol_error": -32602}, False,
     Outcome(400, refused(-32602), [GET_ITEM]),
     ["protocol_error: the call was refused, but only after 1 upstream request(s), first GET "
      f"{GET_ITEM.url}"]),
    ("a refusal expected, an HTTP failure got", {"protocol_error": -32602}, False,
     Outcome(401, "Unauthorized", []),
     ["protocol_error: expected JSON-RPC error -32602, got HTTP 401: Unauthorized"]),
    ("a string that reached the caller, in the preview and as a key",
     {"confirm": True, "expect_absent": ["pat@example.com", "Pat"]}, True,
     Outcome(200, answer({"who": {"pat@example.com": 1}}), [], answer({"to": ["x", "Pat B"]}),
             0),
     ["expect_absent: 'pat@example.com' appears in result.structuredContent.who."
      "pat@example.com (a key)",
      "expect_absent: 'Pat' appears in the preview's result.structuredContent.to[1]"]),
]


@pytest.mark.parametrize(("given", "writes", "outcome", "expected"),
                         [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_each_difference_is_one_sentence_naming_the_key(
        given: dict[str, Any], writes: bool, outcome: Outcome, expected: list[str]) -> None:
    case = ToolTestCase.model_validate({"name": "a case", **given})

    assert differences(case, writes=writes, base_url=BASE, outcome=outcome) == expected


@pytest.mark.parametrize(("actual", "expected", "difference"), [
    ({"a": 1, "b": [1, 2, 3]}, {"b": [1, 2]}, None),
    ({"a": 1}, {"a": 2}, "s.a: expected 2, got 1"),
    ({"a": 1}, {"c": 1}, "s.c: missing"),
    ([1], {"a": 1}, "s: expected an object, got [1]"),
    ({"a": [1]}, {"a": [1, 2]}, "s.a: expected at least 2 item(s), got [1]"),
    ({"a": [{"b": 1}, {"b": 2}]}, {"a": [{}, {"b": 3}]}, "s.a[1].b: expected 3, got 2"),
    ("x" * 200, "y", f"s: expected y, got {'x' * 97}..."),
])
def test_structured_is_compared_as_a_subset_and_the_first_difference_is_named(
        actual: Any, expected: Any, difference: str | None) -> None:
    assert subset_mismatch(actual, expected, "s") == difference


def test_a_preview_gives_its_token_and_anything_else_says_what_came() -> None:
    preview = {"status": "preview", "changed": False, "confirmation_token": "tok"}

    assert preview_token(answer(preview)) == ("tok", "")
    assert preview_token(answer({"status": "done", "changed": True})) == (
        None, 'confirm: the first call gave no unchanged preview: {"jsonrpc":"2.0","id":1,'
              '"result":{"content":[{"type":"text","text":""}],"isError":false,"structur...')


def test_as_scopes_and_scopes_are_one_key_given_one_way() -> None:
    assert ToolTestCase(name="a", as_scopes=["x"]).caller_scopes == ["x"]
    assert ToolTestCase(name="a", scopes=["y"]).caller_scopes == ["y"]
    assert ToolTestCase(name="a").caller_scopes is None
    with pytest.raises(ValueError, match="the same key"):
        ToolTestCase(name="a", as_scopes=["x"], scopes=["x"])
