"""Pruned decoding (gateway/spec/reads.py): selecting from the pruned answer gives byte for byte
what selecting from the whole one gives, for every expression the shipped specs use, on their
documents, on edge cases and on generated documents; and whatever could differ is decoded
whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jmespath
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from gateway import native
from gateway.errors import ResponseShapeError, UpstreamError
from gateway.spec.jmes import compile_expression, search
from gateway.spec.reads import WHOLE, Items, Keys, NotPruned, PrunedDecoder, Unsupported, reads
from gateway.upstream.answers import decode_response
from tests.spec.test_jmes import EDGE, EXTRA, documents, shipped_expressions
from tests.support import properties

# Tests taking `row_loops` run with the C loops and without them (then nothing is pruned, and
# every answer must still come out the same); the differential ones run with the C loops only,
# since without them they would compare orjson with itself.

PAGE = "{items: data.responses[].{id: id, score: score}, page: data.page || page}"
PROPERTY = properties(150, HealthCheck.function_scoped_fixture)


@pytest.fixture
def c_loops() -> Iterator[None]:
    if not native.built():
        pytest.skip("the C row loops are not built in this install (tests/native/test_row_loops"
                    ".py fails where a compiler was at hand)")
    before = native.rows() is not None
    native.use_native(True)
    yield
    native.use_native(before)


def shown(value: Any) -> str:
    """A text that tells 1 from 1.0 from true and keeps key order (stdlib json, so that an
    integer too wide for orjson is shown too)."""
    return json.dumps(value)


def selected(expression: str, decode: Any, raw: bytes) -> tuple[str, ...]:
    try:
        return ("ok", shown(search(compile_expression(expression), decode(raw))))
    except ResponseShapeError as exc:
        return ("error", str(exc))


def pruned_or_none(expression: str, raw: bytes) -> tuple[str, ...] | None:
    """The selection from the pruned answer, or None when the answer is decoded whole."""
    decoder = PrunedDecoder(compile_expression(expression).parsed)
    try:
        decoder(raw)
    except NotPruned:
        return None
    return selected(expression, decoder, raw)


def test_what_an_expression_reads() -> None:
    def of(text: str) -> Any:
        parsed: Any = jmespath.compile(text).parsed
        return reads(parsed)

    assert of(PAGE) == Keys({"data": Keys({"responses": Items(Keys({"id": WHOLE,
                                                                     "score": WHOLE})),
                                           "page": WHOLE}), "page": WHOLE})
    assert of("a[0].b") == Keys({"a": Items(Keys({"b": WHOLE}))})
    assert of("a[1:3]") == Keys({"a": Items(WHOLE)})
    assert of("a.b || c") == Keys({"a": Keys({"b": WHOLE}), "c": WHOLE})
    # What is tested for truth or passed to a function is read whole.
    assert of("a || b.c") == Keys({"a": WHOLE, "b": Keys({"c": WHOLE})})
    assert of("length(a.b)") == Keys({"a": Keys({"b": WHOLE})})
    assert of("!a") == Keys({"a": WHOLE})
    assert of("(a || b).c") == Keys({"a": WHOLE, "b": Keys({"c": WHOLE})})
    # Read both as an object and as a list: kept as it is.
    assert of("[a.b, a[0]]") == Keys({"a": WHOLE})
    assert of("`1`") is None
    assert of("@") is WHOLE
    # A filter reads what it tests whole, and what it projects as the projection reads it.
    assert of("a[?b > `1`].c") == Keys({"a": Items(Keys({"b": WHOLE, "c": WHOLE}))})
    assert of("a[?b.x == c].{n: n}") == Keys({"a": Items(Keys({"b": Keys({"x": WHOLE}),
                                                               "c": WHOLE, "n": WHOLE}))})
    for unknown in ("*.b", "sort_by(a, &b)", "a[?b].c | *.d"):
        with pytest.raises(Unsupported):
            of(unknown)


@pytest.mark.parametrize("expression", [*shipped_expressions(), *EXTRA])
@pytest.mark.usefixtures("c_loops")
def test_pruned_answers_select_what_whole_ones_do(expression: str) -> None:
    for document in [*documents(), *EDGE]:
        raw = orjson.dumps(document)
        pruned = pruned_or_none(expression, raw)
        if pruned is not None:
            assert pruned == selected(expression, orjson.loads, raw), (expression, document)


def test_a_list_page_is_decoded_pruned_with_the_c_loops(row_loops: str) -> None:
    document = documents()[0]  # 30 feedback rows of the sandbox, each with 33 fields
    raw = orjson.dumps(document)
    decoder = PrunedDecoder(compile_expression(PAGE).parsed)
    if row_loops == "python":
        with pytest.raises(NotPruned):
            decoder(raw)
        return
    body = decoder(raw)
    assert list(body) == ["data"]
    assert set(body["data"]) == {"responses", "page"}
    assert [set(row) for row in body["data"]["responses"]] == [{"id", "score"}] * 30
    assert selected(PAGE, decoder, raw) == selected(PAGE, orjson.loads, raw)


def test_keys_of_every_kind_are_read(row_loops: str) -> None:
    """Keys that mean something to Python's TypedDict or are no identifiers at all."""
    names = ["", "__init__", "total", "a.b", "ß", "__class__", "__annotations__",
             "__total__", "__required_keys__", "with space", "0"]
    expression = "rows[].{" + ", ".join(f"k{i}: {json.dumps(name)}"
                                       for i, name in enumerate(names)) + "}"
    raw = orjson.dumps({"rows": [{**{name: i for i, name in enumerate(names)}, "unread": 1}]})
    pruned = pruned_or_none(expression, raw)
    assert (pruned is None) == (row_loops == "python")
    if pruned is not None:
        assert pruned == selected(expression, orjson.loads, raw)
        assert json.loads(pruned[1]) == [{f"k{i}": i for i in range(len(names))}]


@pytest.mark.parametrize("raw", [
    b'{"data": {"responses": [{"id": 18446744073709551616}]}}',
    b'{"data": {"responses": [{"id": -9223372036854775809}]}}',
    b'{"page": [1, {"x": 123456789012345678901234567890}]}',
])
def test_integers_beyond_64_bits_are_decoded_whole(raw: bytes, row_loops: str) -> None:
    """orjson reads them as floats and msgspec as exact integers (which orjson cannot encode)."""
    decoder = PrunedDecoder(compile_expression(PAGE).parsed)
    with pytest.raises(NotPruned):
        decoder(raw)
    answer = decode_response(200, {}, raw, pruned=decoder)
    assert shown(answer.body) == shown(orjson.loads(raw))


def test_the_widest_integers_orjson_keeps_exact_are_pruned(row_loops: str) -> None:
    raw = b'{"page": 18446744073709551615, "data": {"page": -9223372036854775808, "x": 1e400}}'
    pruned = pruned_or_none(PAGE, raw)
    assert pruned == (None if row_loops == "python" else
                      ("ok", '{"items": null, "page": -9223372036854775808}'))


@pytest.mark.parametrize("raw", [
    b'{"data": "text"}', b'{"data": {"responses": {"id": 1}}}', b'[1, 2]', b'"text"',
    b'{"data": {"responses": [["nested"]]}}', b'{"data": {"responses": [1]}}',
])
def test_answers_of_another_shape_are_decoded_whole(raw: bytes, row_loops: str) -> None:
    decoder = PrunedDecoder(compile_expression(PAGE).parsed)
    with pytest.raises(NotPruned):
        decoder(raw)
    assert selected(PAGE, lambda r: decode_response(200, {}, r, pruned=decoder).body, raw) == (
        selected(PAGE, orjson.loads, raw))


def test_null_where_an_object_or_list_is_read_is_pruned(row_loops: str) -> None:
    for raw in (b'null', b'{"data": null}', b'{"data": {"responses": null}}',
                b'{"data": {"responses": [null, {"id": 1, "other": [1, 2]}]}}'):
        pruned = pruned_or_none(PAGE, raw)
        assert (pruned is None) == (row_loops == "python"), raw
        if pruned is not None:
            assert pruned == selected(PAGE, orjson.loads, raw), raw


@pytest.mark.parametrize("raw", [b"", b"  ", b"not json", b'{"data": [1,,2]}',
                                 b'{"data": 1} trailing', b'{"page": NaN}'])
def test_what_is_not_json_fails_as_before(raw: bytes, row_loops: str) -> None:
    decoder = PrunedDecoder(compile_expression(PAGE).parsed)
    with pytest.raises(NotPruned):
        decoder(raw)
    if raw.strip():
        with pytest.raises(ResponseShapeError, match="not valid JSON"):
            decode_response(200, {"content-type": "application/json"}, raw, pruned=decoder)
    else:
        assert decode_response(200, {}, raw, pruned=decoder).body is None


def test_an_error_answer_is_decoded_whole_for_its_message(row_loops: str) -> None:
    decoder = PrunedDecoder(compile_expression(PAGE).parsed)
    with pytest.raises(UpstreamError, match="no such campaign"):
        decode_response(404, {}, b'{"message": "no such campaign", "data": {"page": 1}}',
                        pruned=decoder)


@pytest.mark.parametrize("expression", ["@", "data", "{a: data.page, b: message}",
                                        "data.responses[]", "`1`", "*.b",
                                        "sort_by(data.responses, &id)[].id"])
def test_answers_with_no_rows_read_in_part_or_unknown_nodes_decode_whole(expression: str
                                                                         ) -> None:
    decoder = PrunedDecoder(compile_expression(expression).parsed)
    for _ in range(2):  # and keep saying so without walking the tree again
        with pytest.raises(NotPruned):
            decoder(b'{"data": {"responses": [{"id": 1}]}}')


@pytest.mark.parametrize("expression", ["{x: (a || b).id, rows: data.responses[].id}",
                                        "{x: (a && b).id, rows: data.responses[].id}",
                                        "{x: (!a || b).id, rows: data.responses[].id}"])
def test_what_is_tested_for_truth_is_kept_whole(expression: str, row_loops: str) -> None:
    """`a` holds no `id` but is not empty, so it is true: pruned to the keys read after it, it
    would be empty, and so false."""
    raw = orjson.dumps({"a": {"other": 1}, "b": {"id": 2},
                        "data": {"responses": [{"id": 3, "unread": 4}]}})
    pruned = pruned_or_none(expression, raw)
    assert (pruned is None) == (row_loops == "python")
    if pruned is not None:
        assert pruned == selected(expression, orjson.loads, raw)


KEYS = st.sampled_from(["data", "responses", "page", "id", "score", "name", "tags", "a", "b"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(["", "x", "é", "jane@example.com"]))
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=40)
GENERATED = [PAGE, "data.responses[0].tags[]", "data.responses[*].tags[].name",
             "length(data.responses)", "data.responses[1:3].id", "not_null(data.page, page)",
             "data.page && data.responses[].id", "!data.responses", "[data.page, page]",
             "data | responses[].id", "data.responses[].{id: id, t: 'x'}",
             "data.responses[-1].score", "explode(data.responses, 'tags')[].{id: id, t: tags}",
             "data.responses[].name | [0]", "{a: a.b, b: b[0].a, c: a || b}",
             # What is tested for truth is kept whole, even when only a part of it is read:
             "(a || b).id", "(a && b).id", "(data.responses || b)[].id", "(a || b)[0]",
             "data.responses[?score > `5`].{id: id}", "data.responses[?tags].id",
             "data.responses[?id == page].name", "data.responses[?!(a || b)].score"]


@pytest.mark.usefixtures("c_loops")
@PROPERTY
@given(document=DOCUMENTS, expression=st.sampled_from(GENERATED))
def test_generated_answers_select_the_same(document: Any, expression: str) -> None:
    raw = json.dumps(document).encode()
    pruned = pruned_or_none(expression, raw)
    if pruned is not None:
        assert pruned == selected(expression, orjson.loads, raw)
