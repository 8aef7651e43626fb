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
from gateway.calls.redaction import PLAIN, Redaction
from gateway.spec.pages import PageAnswer
from gateway.spec.reads import NotPruned
from gateway.upstream.answers import decode_response


def shaped_page(answer: PageAnswer, redaction: Redaction, max_bytes: int
                ) -> dict[str, Any] | None:
    """The selected, de-identified result, or None where the pass declines: then the caller
    shapes `whole(answer)` as any other answer."""
    loops = native.rows()
    if loops is None:
        return None
    page, raw = answer.page, answer.raw
    verdict, pseudonym, scrub = redaction.row_policy()
    if verdict is not None and verdict(page.key) != PLAIN:
        return None  # the list itself is named by the policy: the whole path treats it whole
    fields = tuple((as_json, key, PLAIN if verdict is None else verdict(name))
                   for name, as_json, key in page.fields)
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


def whole(answer: PageAnswer) -> Any:
    """The answer decoded as any other is (pruned where it can be, else whole).

    Raises:
        ResponseShapeError: it is not JSON.
    """
    return decode_response(answer.status, answer.headers, answer.raw,
                           pruned=answer.decoder.fallback).body
