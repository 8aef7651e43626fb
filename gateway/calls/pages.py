"""A page of rows shaped in one pass over its bytes (which selections qualify:
gateway/spec/pages.py): the selection of plain fields, de-identification and encoding of every
row in C (`page` in gateway/native/_pages.c), the result's other entries as the whole path
makes them. Pure but for the policy's callbacks.

Its rows are orjson fragments, encoded as they are wherever the result is encoded; the
de-identification walk passes them by, since they were made under the same policy.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway import native
from gateway.calls.redaction import PLAIN, Redaction, key_verdict
from gateway.spec.compiled import RedactionRules
from gateway.spec.pages import PageAnswer, PageDecoder
from gateway.spec.reads import NotPruned
from gateway.upstream.answers import decode_response


def shaped_page(answer: PageAnswer, redaction: Redaction, max_bytes: int
                ) -> dict[str, Any] | None:
    """The selected, de-identified result, or None where the pass declines: then the caller
    shapes `whole(answer)` as any other answer."""
    loops = native.rows()
    if loops is None:
        return None
    fields = _fields(answer.decoder, redaction.rules)
    if fields is None:
        return None  # the list itself is named by the policy: the whole path treats it whole
    page, raw = answer.page, answer.raw
    verdict, pseudonym, scrub = redaction.row_policy()
    made = loops.page(raw, page.path, fields, verdict, pseudonym, scrub, orjson.Fragment)
    if made is None:
        return None
    rows, size, start, end = made
    if page.entries:
        try:
            envelope = answer.decoder.envelope(raw[:start] + b"[]" + raw[end:])
        except NotPruned:
            return None
        result: dict[str, Any] = redaction({key: [] if evaluate is None else evaluate(envelope)
                                            for key, evaluate in page.entries})
    else:
        result = {"items": []}
    # The encoded result's exact size: a list of fragments is their bytes and the commas. Over
    # its bound the budget would trim, and may shorten long text, which it can do only to
    # objects: that result is left to the whole path.
    if len(orjson.dumps(result)) + size + max(len(rows) - 1, 0) > max_bytes:
        return None
    result[page.key] = rows
    return result


def _fields(decoder: PageDecoder, rules: RedactionRules | None
            ) -> tuple[tuple[bytes, str, int], ...] | None:
    """The rows' fields as the pass takes them, each with the policy's verdict on its name, or
    None when the policy names the rows' key: worked out once a tool and policy."""
    known = decoder.policies
    if rules in known:
        fields: tuple[tuple[bytes, str, int], ...] | None = known[rules]
        return fields
    page = decoder.page
    if rules is not None and key_verdict(rules, page.key) != PLAIN:
        fields = None
    else:
        fields = tuple((as_json, key, PLAIN if rules is None else key_verdict(rules, name))
                       for name, as_json, key in page.fields)
    known[rules] = fields
    return fields


def whole(answer: PageAnswer) -> Any:
    """The answer decoded as any other is (pruned where it can be, else whole).

    Raises:
        ResponseShapeError: it is not JSON.
    """
    return decode_response(answer.status, answer.headers, answer.raw,
                           pruned=answer.decoder.fallback).body
