"""What differed between a tool test case and what the gateway did: one sentence per difference,
none when the case passes. Pure: the runner (gateway/server/case_runner.py) makes the calls and
brings their answers and the upstream requests they sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

from gateway.spec.cases import ExpectedRequest, ExpectedResult, ToolTestCase

SHOWN = 100
"""Characters of a value quoted in a difference; the rest is cut."""


class Sent(Protocol):
    """One upstream request as the gateway sent it (the in-memory wire's `Exchange`)."""

    @property
    def method(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def body(self) -> bytes | None: ...


@dataclass(frozen=True)
class Outcome:
    """What one case got: the HTTP status and JSON body of its (last) call, every upstream
    request of the case in order (introspection not counted), and for `confirm: true` the
    preview's body and how many requests were sent before the confirmed call."""

    status: int
    body: Any
    sent: Sequence[Sent]
    preview: Any = None
    sent_by_preview: int | None = None


def shown(value: Any) -> str:
    """A value as JSON, cut to SHOWN characters."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def preview_token(body: Any) -> tuple[str | None, str]:
    """The confirmation token of a preview answer, or None and what is wrong with it."""
    result = body.get("result") if isinstance(body, dict) else None
    preview = result.get("structuredContent") if isinstance(result, dict) else None
    if (not isinstance(preview, dict) or preview.get("status") != "preview"
            or preview.get("changed") is not False or "confirmation_token" not in preview):
        return None, f"confirm: the first call gave no unchanged preview: {shown(body)}"
    return str(preview["confirmation_token"]), ""


def differences(case: ToolTestCase, *, writes: bool, base_url: str,
                outcome: Outcome) -> list[str]:
    """Every way `outcome` differs from what `case` expects (`writes`: the tool is a write)."""
    if case.protocol_error is not None:
        found = _refusal(case.protocol_error, outcome)
    elif not (found := _no_result(outcome)):
        found = [*_requests(case, writes, base_url, outcome),
                 *_result(case.expect, outcome.body["result"])]
    return [*found, *_leaks(case.expect_absent, outcome)]


def _refusal(code: int, outcome: Outcome) -> list[str]:
    error = outcome.body.get("error") if isinstance(outcome.body, dict) else None
    if not isinstance(error, dict):
        result = outcome.body.get("result") if isinstance(outcome.body, dict) else None
        got = (f"a result: {shown(_text(result))}" if isinstance(result, dict)
               else f"HTTP {outcome.status}: {shown(outcome.body)}")
        return [f"protocol_error: expected JSON-RPC error {code}, got {got}"]
    if error.get("code") != code:
        return [f"protocol_error: expected JSON-RPC error {code}, got {error.get('code')}: "
                f"{shown(error.get('message', ''))}"]
    if outcome.sent:
        first = outcome.sent[0]
        return [f"protocol_error: the call was refused, but only after {len(outcome.sent)} "
                f"upstream request(s), first {first.method} {first.url}"]
    return []


def _no_result(outcome: Outcome) -> list[str]:
    body = outcome.body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return [f"JSON-RPC error {error.get('code')} instead of a result: "
                f"{shown(error.get('message', ''))}"]
    if outcome.status != 200:
        return [f"HTTP {outcome.status} instead of a result: {shown(body)}"]
    if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
        return [f"no result in the answer: {shown(body)}"]
    return []


def _requests(case: ToolTestCase, writes: bool, base_url: str, outcome: Outcome) -> list[str]:
    found = []
    sent = outcome.sent
    if case.expect_calls is not None and len(sent) != case.expect_calls:
        found.append(f"expect_calls: expected {case.expect_calls} upstream request(s), "
                     f"{len(sent)} sent")
    read_only = (sent[:outcome.sent_by_preview] if outcome.sent_by_preview is not None
                 else sent if writes else [])
    found.extend(f"the preview sent {r.method} {r.url}: a preview may only read"
                 for r in read_only if r.method != "GET")
    if case.expect_request is not None:
        if not sent:
            found.append("expect_request: no upstream request was sent")
        else:
            found.extend(request_differences(case.expect_request, sent[-1], base_url))
    return found


def request_differences(expected: ExpectedRequest, request: Sent, base_url: str) -> list[str]:
    """How the last upstream request differs from `expect_request`."""
    found = []
    url = urlsplit(request.url)
    if expected.method is not None and request.method != expected.method:
        found.append(f"expect_request.method: expected {expected.method}, sent {request.method}")
    wanted_path = urlsplit(base_url).path + (expected.path or "")
    if expected.path is not None and url.path != wanted_path:
        found.append(f"expect_request.path: expected {wanted_path}, sent {url.path}")
    if expected.query is not None:
        query = parse_qs(url.query, keep_blank_values=True)
        flat = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
        if flat != expected.query:
            found.append(f"expect_request.query: expected {shown(expected.query)}, "
                         f"sent {shown(flat)}")
    if expected.body is not None:
        try:
            body = orjson.loads(request.body) if request.body else None
        except orjson.JSONDecodeError:
            body = request.body.decode(errors="replace") if request.body else None
        if body != expected.body:
            found.append(f"expect_request.body: expected {shown(expected.body)}, "
                         f"sent {shown(body)}")
    return found


def _result(expect: ExpectedResult, result: dict[str, Any]) -> list[str]:
    found = []
    text = _text(result)
    if result.get("isError", False) is not expect.is_error:
        found.append(f"isError: expected {str(expect.is_error).lower()}, got "
                     f"{str(result.get('isError', False)).lower()}: {shown(text)}")
    found.extend(f"text_contains: {needle!r} is not in the text: {shown(text)}"
                 for needle in expect.text_contains if needle not in text)
    found.extend(f"text_excludes: {needle!r} is in the text"
                 for needle in expect.text_excludes if needle in text)
    if expect.structured is not None:
        if "structuredContent" not in result:
            found.append("structured: the result has no structuredContent")
        elif (mismatch := subset_mismatch(result["structuredContent"], expect.structured,
                                          "structured")) is not None:
            found.append(mismatch)
    return found


def _text(result: dict[str, Any]) -> str:
    """The text blocks of a result, joined."""
    blocks = result.get("content")
    return " ".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict)) if isinstance(
        blocks, list) else ""


def subset_mismatch(actual: Any, expected: Any, where: str) -> str | None:
    """Where `expected` is not contained in `actual`, or None: objects match key by key (extra
    keys allowed), lists item by item from the first (extra items allowed), scalars equal."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected an object, got {shown(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{where}.{key}: missing"
            if (found := subset_mismatch(actual[key], value, f"{where}.{key}")) is not None:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) < len(expected):
            return f"{where}: expected at least {len(expected)} item(s), got {shown(actual)}"
        return next((found for index, (a, e) in enumerate(zip(actual, expected, strict=False))
                     if (found := subset_mismatch(a, e, f"{where}[{index}]")) is not None), None)
    if actual != expected:
        return f"{where}: expected {shown(expected)}, got {shown(actual)}"
    return None


def _leaks(needles: Sequence[str], outcome: Outcome) -> list[str]:
    answers = [("the preview's ", outcome.preview)] if outcome.preview is not None else []
    answers.append(("", outcome.body))
    found = []
    for needle in needles:
        places = [f"{label}{path}" for label, body in answers
                  for path in _occurrences(body, needle, "")]
        if places:
            # The structured result names the field; the text block only repeats it.
            first = next((p for p in places if ".structuredContent" in p), places[0])
            more = f" (and {len(places) - 1} more place(s))" if len(places) > 1 else ""
            found.append(f"expect_absent: {needle!r} appears in {first}{more}")
    return found


def _occurrences(value: Any, needle: str, path: str) -> Iterator[str]:
    """The path of every key or string value containing `needle`, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if needle in str(key):
                yield f"{inner} (a key)"
            yield from _occurrences(item, needle, inner)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _occurrences(item, needle, f"{path}[{index}]")
    elif isinstance(value, str) and needle in value:
        yield path
