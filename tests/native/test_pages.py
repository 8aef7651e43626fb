"""The one-pass page (gateway/native/_pages.c, through gateway/calls/pages.py) gives, byte for
byte, what the whole path gives (decode, select, de-identify, encode), or declines and leaves
the answer to it: on generated pages written in every way JSON allows, and on the inputs a
scanner gets wrong most easily. A pass that declined everything would pass the comparisons, so
the pages a shipped upstream writes must not be declined."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import native
from gateway.calls.pages import shaped_page, whole
from gateway.calls.redaction import Pseudonymiser, Redaction, memoised
from gateway.calls.shaping import select
from gateway.errors import ResponseShapeError
from gateway.spec.compiled import RedactionRules
from gateway.spec.jmes import compile_expression
from gateway.spec.pages import (
    WHOLE_ITEMS_FROM,
    PageAnswer,
    PageDecoder,
    page_decoder,
    row_page,
)
from tests.support import properties

pytestmark = pytest.mark.skipif(not native.built(), reason="the C row loops are not built")

KEY = b"pages-test-key-0123456789abcdef"
SELECTION = compile_expression(
    "{items: data.rows[].{id: id, email: email, firstName: firstName, note: note, tags: tags,"
    " nested: nested, assigned: assigned, city: city, again: id, missing: nowhere},"
    " page: data.page || page, total: data.total}")
BARE = compile_expression("data.rows[*].{id: id, email: email, note: note}")
WHOLE_SELECTION = compile_expression(
    "{items: data.rows, page: data.page || page, total: data.total}")
NESTED_SELECTION = compile_expression(  # one object's plain fields, as get-responses' contact
    "{items: data.rows[].{id: id, person: {id: nested.id, email: nested.email,"
    " name: nested.name, city: nested.city, again: nested.id, gone: nested.nowhere},"
    " email: email, other: {k: nested.k}}, page: data.page || page}")
RULES = RedactionRules(pseudonymise=frozenset({"email", "firstName", "assigned"}),
                       drop=frozenset({"city"}), scrub_text=True)
NO_SCRUB = RedactionRules(pseudonymise=RULES.pseudonymise, drop=RULES.drop, scrub_text=False)
PROPERTY = properties(150)


@pytest.fixture(autouse=True)
def _compiled() -> Iterator[None]:
    before = native.rows() is not None
    native.use_native(True)
    yield
    native.use_native(before)


def redaction(rules: RedactionRules | None) -> Redaction:
    if rules is None:
        return Redaction()
    return Redaction(rules, Pseudonymiser(KEY, "acct-1", memoised(256)))


def decoder_of(expression: Any) -> PageDecoder:
    decoder = page_decoder(expression.parsed)
    assert decoder is not None
    return decoder


def both(raw: bytes, rules: RedactionRules | None = RULES, expression: Any = SELECTION,
         max_bytes: int = 10**7, extra: dict[str, Any] | None = None
         ) -> tuple[bytes | None, bytes | None]:
    """The page's result (None: declined) and the whole path's (None: it refused the answer)."""
    answer = PageAnswer(decoder_of(expression), raw)
    fast = shaped_page(answer, redaction(rules), max_bytes, extra)
    try:
        slow = orjson.dumps(redaction(rules)(select(expression, whole(answer))))
    except ResponseShapeError:
        slow = None
    return (None if fast is None else orjson.dumps(fast)), slow


def agrees(raw: bytes, **options: Any) -> bytes | None:
    """Asserts the page gives the whole path's bytes wherever it does not decline."""
    fast, slow = both(raw, **options)
    if fast is not None:
        assert slow is not None, raw  # a result where the whole path refuses the answer
        assert fast == slow, raw
    return fast


TEXT = st.sampled_from([
    "", "plain", "jane@example.com", "Write to JANE@Example.com today", "100%", "a@b", "@",
    "https://crm.test/?q=jane%40example.com", "line\nbreak", 'a "quoted" word', "back\\slash",
    "tab\there", "\x01\x1f", "é ß 中文", "emoji 😀 mail 😀@example.org", "x" * 70, "/", "\u2028"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), TEXT,
                    st.floats(allow_nan=False, allow_infinity=False))
INNER_KEYS = st.sampled_from(["id", "name", "email", "EMAIL", "assigned", "city", "note", "ß",
                              "k"])
NESTED = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(INNER_KEYS, inner, max_size=4)), max_leaves=12)
ROW_KEYS = st.sampled_from(["id", "email", "firstName", "note", "tags", "nested", "assigned",
                            "city", "score", "unread", "jane@example.com", 'quo"te', "ünï"])
ROWS = st.lists(st.dictionaries(ROW_KEYS, NESTED, max_size=9), max_size=6)
SPELLINGS = st.sampled_from(["orjson", "ascii", "indent"])


def spelt(document: Any, spelling: str) -> bytes:
    if spelling == "orjson":  # integers beyond 64 bits as Python writes them
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    if spelling == "ascii":  # every non-ASCII character as \\u escapes, surrogate pairs too
        return json.dumps(document).encode()
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


@PROPERTY
@given(ROWS, st.one_of(st.none(), st.integers(0, 9)), SPELLINGS,
       st.sampled_from([RULES, NO_SCRUB, None]))
def test_generated_pages_agree_with_the_whole_path(rows: list[Any], page: int | None,
                                                   spelling: str,
                                                   rules: RedactionRules | None) -> None:
    document = {"message": "OK", "data": {"rows": rows, "page": page, "total": len(rows)}}
    agrees(spelt(document, spelling), rules=rules)


@settings(PROPERTY, max_examples=100)
@given(st.lists(NESTED, max_size=6), SPELLINGS, st.sampled_from([RULES, NO_SCRUB, None]))
def test_generated_pages_of_items_taken_whole_agree_with_the_whole_path(
        items: list[Any], spelling: str, rules: RedactionRules | None) -> None:
    document = {"data": {"rows": items, "page": 1, "total": len(items)}}
    agrees(spelt(document, spelling), rules=rules, expression=WHOLE_SELECTION)


@settings(PROPERTY, max_examples=100)
@given(ROWS, SPELLINGS, st.sampled_from([RULES, NO_SCRUB, None]))
def test_generated_pages_with_a_nested_selection_agree_with_the_whole_path(
        rows: list[Any], spelling: str, rules: RedactionRules | None) -> None:
    document = {"data": {"rows": rows, "page": 1}}
    agrees(spelt(document, spelling), rules=rules, expression=NESTED_SELECTION)


ANY_TEXT = st.one_of(TEXT, st.text(max_size=20).filter(lambda text: not any(
    0xd800 <= ord(character) <= 0xdfff for character in text)))
PLAIN_ROWS = st.lists(st.fixed_dictionaries({
    "id": st.integers(-10**15, 10**15), "email": ANY_TEXT, "firstName": ANY_TEXT,
    "note": ANY_TEXT, "tags": st.lists(ANY_TEXT, max_size=3), "city": ANY_TEXT,
    "nested": st.dictionaries(INNER_KEYS.filter(str.isascii), ANY_TEXT, max_size=3),
    "unread": SCALARS}), max_size=5)


MARKED = st.builds(lambda before, mark, after: "a" * before + mark + "b" * after,
                   st.integers(0, 40), st.sampled_from(['"', "\\", "\x01", "\x1f", "@", "%",
                                                        "é", "😀", "\u2028", " ", "~", "\x7f"]),
                   st.integers(0, 40))


@PROPERTY
@given(st.lists(st.fixed_dictionaries({"id": st.integers(0, 9), "email": MARKED,
                                       "note": MARKED, "city": MARKED}), min_size=1,
                max_size=4), SPELLINGS, st.sampled_from([RULES, NO_SCRUB, None]))
def test_a_mark_in_a_string_is_seen_wherever_it_falls(rows: list[Any], spelling: str,
                                                      rules: RedactionRules | None) -> None:
    """The string scan steps sixteen bytes at a time, then eight at the end of the answer: a
    quote, an escape, a control character, an address sign or a wide character is found at any
    position, in the middle of a string as at the end of the answer."""
    document = {"data": {"rows": rows, "page": 1, "total": len(rows)}}
    assert agrees(spelt(document, spelling), rules=rules) is not None or spelling == "ascii"
    for row in rows:  # each string the last thing in the answer but its closing brackets
        agrees(spelt({"data": {"rows": [{"id": 1, "city": row["city"]}]}}, spelling),
               rules=rules)


@pytest.mark.parametrize("control", [b"\x00", b"\x01", b"\x1f", b"\n"])
@pytest.mark.parametrize("at", range(0, 40, 3))
def test_a_raw_control_character_in_a_string_is_refused_wherever_it_falls(
        at: int, control: bytes) -> None:
    text = b"a" * at + control + b"b" * 20
    for field in (b"city", b"email", b"other"):  # kept, pseudonymised, skipped
        raw = b'{"data":{"rows":[{"id":1,"' + field + b'":"' + text + b'","note":"x"}]}}'
        assert both(raw) == (None, None), raw


@PROPERTY  # (a key spelt with an escape, as "ascii" spells "ß", is declined: rare in keys)
@given(PLAIN_ROWS, SPELLINGS)
def test_pages_as_upstreams_write_them_are_never_declined(rows: list[Any],
                                                          spelling: str) -> None:
    document = {"data": {"rows": rows, "page": 1, "total": len(rows)}}
    assert agrees(spelt(document, spelling)) is not None
    assert agrees(spelt(document, spelling), expression=NESTED_SELECTION) is not None
    for row in rows:  # taken whole, a float is read, and declined
        del row["unread"]
    assert agrees(spelt(document, spelling), expression=WHOLE_SELECTION) is not None


def test_a_shipped_kind_of_page_is_made_in_one_pass_and_de_identified() -> None:
    raw = orjson.dumps({"data": {"rows": [
        {"id": 7, "email": "Jane@Example.com", "firstName": "Jane", "city": "Oslo",
         "note": "cc bob@example.org", "assigned": ["a@b.co", 3, None], "unread": 1.5}],
        "page": 2, "total": 1}})
    made = agrees(raw)
    assert made is not None
    row = orjson.loads(made)["items"][0]
    assert row["email"].endswith("@pseudonym.invalid") and "city" not in row
    assert row["note"].startswith("cc person-") and row["missing"] is None
    assert row["assigned"][0].endswith("@pseudonym.invalid") and row["assigned"][1:] == [3, None]
    assert orjson.loads(made)["page"] == 2


BAD_OR_ODD = [
    b'{"data":{"rows":[{"id":1,"id":2}]}}',                        # a repeated selected key
    b'{"data":{"rows":[{"unread":1,"unread":2,"id":3}]}}',         # a repeated skipped key
    b'{"data":{"rows":[{"id":1}]},"data":{"rows":[{"id":2}]}}',    # a repeated path key
    b'{"data":{"rows":[{"email":"\\ud83d\\ude00@x.org"}]}}',        # a surrogate pair
    b'{"data":{"rows":[{"email":"\\ud800"}]}}',                     # a lone surrogate
    b'{"data":{"rows":[{"note":"\\udc00 x"}]}}',
    b'{"data":{"rows":[{"note":"\xff\xfe"}]}}',                     # not UTF-8, selected
    b'{"data":{"rows":[{"unread":"\xff\xfe","id":1}]}}',            # not UTF-8, skipped
    b'{"data":{"rows":[{"city":"\xc0\xaf","id":1}]}}',              # overlong, dropped
    b'{"data":{"rows":[{"id":1}],"pa\xc3fge":2}}',                  # not UTF-8, a key unread
    b'{"data":{"rows":[{"id":1}]},"x":"\xff"}',
    b'{"data":{"rows":[{"id":-0},{"id":1e5},{"id":1.0},{"id":-12}]}}',
    b'{"data":{"rows":[{"id":123456789012345678901234567890}]}}',
    b'{"data":{"rows":[{"unread":123456789012345678901234567890,"id":1}]}}',
    b'{"data":{"rows":[{"unread":1.5e999,"id":1}]}}',
    b'{"data":{"rows":[{"unread":01,"id":1}]}}',
    b'{"data":{"rows":[{"unread":tru,"id":1}]}}',
    b'{"data":{"rows":[{"unread":"a\x01b","id":1}]}}',               # a raw control character
    b'{"data":{"rows":[{"unread":"a\\qb","id":1}]}}',               # a bad escape
    b'{"data":{"rows":[{"unread":"a\\u12","id":1}]}}',
    b'{"data":{"rows":null}}', b'{"data":{"rows":{}}}', b'{"data":{"rows":"x"}}',
    b'{"data":{}}', b'{"data":null}', b'[]', b'null', b'', b'   ',
    b'{"data":{"rows":[null,{"id":1}]}}', b'{"data":{"rows":[[{"id":1}],{"id":2}]}}',
    b'{"data":{"rows":[{"id":1}', b'{"data":{"rows":[{"id":1}]}} x', b'{"data":{"rows":[]}}',
    b' \n{ "data" : { "rows" : [ { "id" : 1 , "note" : "n" } , { } ] , "page" : 3 } } \n',
    b'{"data":{"rows":[{"i\\u0064":5}]}}', b'{"d\\u0061ta":{"rows":[{"id":5}]}}',
    b'{"data":{"rows":[{"jane@example.com":5,"id":1}]}}',
    b'{"data":{"rows":[{"nested":{"a@b.com":1,"email":"x@y.org"}}]}}',
    b'{"data":{"rows":[{"nested":{"k":1,"k":2}}]}}',
    b'{"data":{"rows":[{"email":{"k":"v"}}]}}',                      # a named key's object
    b'{"data":{"rows":[{"assigned":[["a@b.co"],"x",""]}]}}',
    b'{"data":{"rows":[{"note":"\\u0040 and \\/ and \\u00e9"}]}}',    # an escaped at-sign
    b'{"data":{"rows":[{"email":""},{"email":null},{"email":5}]}}',
    b'{"data":{"rows":[{"tags":' + b"[" * 100 + b"]" * 100 + b'}]}}',
    b'{"data":{"rows":[{"unread":' + b"[" * 5000 + b"]" * 5000 + b',"id":1}]}}',
    b'{"data":{"rows":[{"unread":' + b"[" * 5000 + b'}]}}',
]


@pytest.mark.parametrize("raw", BAD_OR_ODD)
@pytest.mark.parametrize("rules", [RULES, None])
def test_odd_and_broken_answers_agree_or_are_declined(raw: bytes,
                                                      rules: RedactionRules | None) -> None:
    agrees(raw, rules=rules)
    agrees(raw, rules=rules, expression=BARE)
    agrees(raw, rules=rules, expression=WHOLE_SELECTION)


@pytest.mark.parametrize("raw", [
    b'{"data":{"rows":[{"id":1,"id":2}]}}', b'{"data":{"rows":[{"email":"\\ud800"}]}}',
    b'{"data":{"rows":[{"id":1.50}]}}', b'{"data":{"rows":[{"id":1e5}]}}',
    b'{"data":{"rows":[{"id":0.00001}]}}', b'{"data":{"rows":[{"id":1}', b'{"data":{"rows":null}}',
    b'{"data":{"rows":[{"unread":' + b"[" * 5000 + b"]" * 5000 + b',"id":1}]}}'])
def test_what_could_differ_is_declined(raw: bytes) -> None:
    assert both(raw)[0] is None


NESTED_ODD = [
    b'{"data":{"rows":[{"nested":null},{},{"nested":{}},{"nested":{"id":1,"k":[1,{"a":2}]}}]}}',
    b'{"data":{"rows":[{"nested":{"email":"Jane@Example.com","city":"Oslo","unread":"\\u00e9"}}]}}',
    b'{"data":{"rows":[{"nested":{"name":"a@b.co","id":{"email":"x@y.org"}}}]}}',
    b'{"data":{"rows":[{"nested":{"email":["a@b.co",null]}}]}}',
    b'{ "data" : { "rows" : [ { "nested" : { "id" : 1 , "name" : "n" } , "id" : 2 } ] } }',
    b'{"data":{"rows":[{"nested":"x"}]}}', b'{"data":{"rows":[{"nested":[{"id":1}]}]}}',
    b'{"data":{"rows":[{"nested":5}]}}', b'{"data":{"rows":[{"nested":true}]}}',
    b'{"data":{"rows":[{"nested":{"id":1,"id":2}}]}}',              # a repeated nested key
    b'{"data":{"rows":[{"nested":{"k":1,"k":2}}]}}',
    b'{"data":{"rows":[{"nested":{"u":1,"u":2,"id":3}}]}}',         # repeated, not selected
    b'{"data":{"rows":[{"nested":{"i\\u0064":1}}]}}',               # spelt with an escape
    b'{"data":{"rows":[{"nested":{"id":1},"nested":{"id":2}}]}}',
    b'{"data":{"rows":[{"nested":{"id":1.5}}]}}', b'{"data":{"rows":[{"nested":{"id":1}]}}',
    b'{"data":{"rows":[{"nested":{"name":"\\ud800"}}]}}',
    b'{"data":{"rows":[{"nested":{"unread":"\xff","id":1}}]}}',
    b'{"data":{"rows":[{"nested":{"id":' + b"[" * 70 + b"]" * 70 + b'}}]}}',
]


@pytest.mark.parametrize("raw", NESTED_ODD)
@pytest.mark.parametrize("rules", [RULES, None])
def test_odd_nested_objects_agree_or_are_declined(raw: bytes,
                                                  rules: RedactionRules | None) -> None:
    agrees(raw, rules=rules, expression=NESTED_SELECTION)


@pytest.mark.parametrize("raw", [
    b'{"data":{"rows":[{"nested":"x"}]}}', b'{"data":{"rows":[{"nested":{"id":1,"id":2}}]}}',
    b'{"data":{"rows":[{"nested":{"i\\u0064":1}}]}}'])
def test_what_a_nested_selection_could_differ_on_is_declined(raw: bytes) -> None:
    assert both(raw, expression=NESTED_SELECTION)[0] is None


def test_a_nested_selection_gives_its_object_whatever_the_row_holds() -> None:
    raw = orjson.dumps({"data": {"rows": [
        {"id": 1, "nested": {"id": 7, "email": "Jane@Example.com", "city": "Oslo", "x": 1}},
        {"id": 2, "nested": None}, {"id": 3}]}})
    made = agrees(raw, expression=NESTED_SELECTION)
    assert made is not None
    first, empty, missing = orjson.loads(made)["items"]
    assert first["person"]["id"] == first["person"]["again"] == 7
    assert first["person"]["email"].endswith("@pseudonym.invalid")
    assert "city" not in first["person"] and first["person"]["gone"] is None
    assert empty["person"] == missing["person"] == {
        "id": None, "email": None, "name": None, "again": None, "gone": None}


def test_a_policy_naming_a_nested_selection_is_left_to_the_whole_path() -> None:
    rules = RedactionRules(pseudonymise=frozenset({"person"}), drop=frozenset(),
                           scrub_text=True)
    raw = orjson.dumps({"data": {"rows": [{"id": 1, "nested": {"id": 2}}]}})
    fast, slow = both(raw, rules=rules, expression=NESTED_SELECTION)
    assert fast is None and slow is not None
    assert both(raw, rules=None, expression=NESTED_SELECTION)[0] is not None


def test_extra_entries_count_in_the_byte_bound_and_never_hide_the_rows() -> None:
    raw = orjson.dumps({"data": {"rows": [{"id": n, "note": "n" * 50} for n in range(20)]}})
    fast, _ = both(raw)
    assert fast is not None
    bound = len(fast) + len(b',"window":"w"')  # the result with the entry, exactly
    assert both(raw, max_bytes=bound, extra={"window": "w"})[0] is not None
    assert both(raw, max_bytes=bound, extra={"window": "ww"})[0] is None
    assert both(raw, max_bytes=bound, extra={"page": "longer than null"})[0] is None
    assert both(raw, extra={"items": "replaced"})[0] is None  # the rows' key: whole path


@pytest.mark.parametrize("number", [b"1.0", b"-0.0", b"4.5", b"72.25", b"0.1", b"0.0001",
                                    b"1234567890123456.0", b"-0.30000000000000004"])
def test_a_float_orjson_writes_with_the_same_text_is_kept(number: bytes) -> None:
    raw = b'{"data":{"rows":[{"id":' + number + b',"note":' + number + b'}]}}'
    made = agrees(raw)
    assert made is not None and b'"id":' + number + b"," in made


FLOAT_TEXTS = st.floats(allow_nan=False, allow_infinity=False).map(repr) | st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,17})\.[0-9]{1,20}([eE][+-]?[0-9]{1,3})?\Z")


def written_by_orjson(text: str) -> str | None:
    try:
        return orjson.dumps(orjson.loads(text)).decode()
    except orjson.JSONDecodeError:  # out of a double's range
        return None


@PROPERTY
@given(st.lists(FLOAT_TEXTS, min_size=1, max_size=8))
def test_floats_are_kept_only_as_orjson_writes_them(texts: list[str]) -> None:
    raw = ('{"data":{"rows":[' + ",".join(f'{{"id":{text}}}' for text in texts)
           + "]}}").encode()
    made = agrees(raw, expression=WHOLE_SELECTION)  # kept, then as orjson writes them
    written = [written_by_orjson(text) for text in texts]
    plain = not any("e" in text.lower() for text in texts)  # an exponent is always declined
    assert (made is not None) is (written == texts and plain)


def test_escapes_and_spaces_are_written_as_orjson_writes_them() -> None:
    raw = b'{ "data" : { "rows" : [ { "note" : "\\u00e9\\n\\/\\"", "id" : 3 } ] } }'
    assert agrees(raw) == (
        b'{"items":[{"id":3,"email":null,"firstName":null,"note":"\xc3\xa9\\n/\\"",'
        b'"tags":null,"nested":null,"assigned":null,"again":3,"missing":null}],'
        b'"page":null,"total":null}')


def test_a_policy_naming_the_rows_key_is_left_to_the_whole_path() -> None:
    rules = RedactionRules(pseudonymise=frozenset({"items"}), drop=frozenset(),
                           scrub_text=True)
    raw = orjson.dumps({"data": {"rows": [{"id": 1, "note": "x"}]}})
    fast, slow = both(raw, rules=rules)
    assert fast is None and slow is not None


def test_a_page_over_its_byte_bound_is_left_to_the_budget() -> None:
    raw = orjson.dumps({"data": {"rows": [{"id": n, "note": "n" * 50} for n in range(20)]}})
    assert both(raw, max_bytes=100_000)[0] is not None
    assert both(raw, max_bytes=500)[0] is None


def test_a_failing_pseudonym_surfaces_as_its_own_exception() -> None:
    def refuse(key: bytes, account: str, value: str) -> str:
        raise RuntimeError("no pseudonyms today")

    raw = orjson.dumps({"data": {"rows": [{"email": "a@b.co"}]}})
    answer = PageAnswer(decoder_of(SELECTION), raw)
    with pytest.raises(RuntimeError, match="no pseudonyms today"):
        shaped_page(answer, Redaction(RULES, Pseudonymiser(KEY, "a", refuse)), 10**7)


def test_items_taken_whole_are_made_in_one_pass_only_from_a_few_kilobytes() -> None:
    small = orjson.dumps({"data": {"rows": [{"id": 1, "email": "a@b.co"}]}})
    large = orjson.dumps({"data": {"rows": [{"id": n, "email": "a@b.co", "note": "n" * 200}
                                            for n in range(WHOLE_ITEMS_FROM // 200)]}})
    with pytest.raises(ValueError):  # NotPruned: decoded whole by the upstream client
        decoder_of(WHOLE_SELECTION)(small)
    assert isinstance(decoder_of(WHOLE_SELECTION)(large), PageAnswer)
    assert isinstance(decoder_of(SELECTION)(small), PageAnswer)  # selected fields: any size


def test_the_compiled_pass_is_off_with_the_loops() -> None:
    native.use_native(False)
    with pytest.raises(ValueError):  # NotPruned: decoded whole by the upstream client
        decoder_of(SELECTION)(b'{"data":{"rows":[]}}')


@pytest.mark.parametrize(("text", "qualifies"), [
    ("data.rows[].{a: a, b: b}", True),
    ("data.rows[*].{a: a}", True),
    ("rows[].{a: a}", True),
    ("{items: data.rows[].{a: a}, page: data.page || page}", True),
    ("{n: length(data.rows), items: data.rows[].{a: a}}", False),   # another entry reads them
    ("{all: data, items: data.rows[].{a: a}}", False),
    ("data.rows[].{a: a.b}", False),                                 # not a plain field
    ("data.rows[?a].{a: a}", False),
    ("data.rows[].{\"a@b\": a}", False),                             # a name with an address
    ("{a: x, a: y, items: r[].{a: a}}", False),                      # a repeated entry
    ("data.rows", False),
    ("r[].{a: a, c: {u: contact.uuid, n: contact.name}}", True),    # one object's fields
    ("r[].{c: {u: contact.uuid}, d: {u: other.uuid}}", True),
    ("r[].{c: {u: contact.uuid, n: other.name}}", False),            # two objects
    ("r[].{c: {u: contact.a.b}}", False),                            # deeper
    ("r[].{c: {u: uuid}}", False),
    ("r[].{c: {u: contact.uuid, u: contact.id}}", False),            # a repeated name
    ("r[].{c: {\"u@x\": contact.uuid}}", False),
    ("r[].{c: {u: contact[0]}}", False),
    ("{items: data.rows, page: data.page}", True),                   # items taken whole
    ("{items: rows}", True),
    ("{rows: data.rows, page: data.page}", False),                   # a list not named items
    ("{items: data.rows, n: length(data.rows)}", False),
    ("{items: data.rows || `[]`}", False),
])
def test_which_selections_qualify(text: str, qualifies: bool) -> None:
    assert (row_page(compile_expression(text).parsed) is not None) is qualifies
