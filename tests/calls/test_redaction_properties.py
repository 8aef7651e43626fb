"""De-identification over generated data: no generated address, in any spelling (Unicode local
parts and domains, sub-domains, plus-tags, upper case, percent-encoded at-signs and bytes),
survives anywhere in a redacted value, whether it stood in a policy field, in free text, in a
list or as an object key; the value keeps its shape and stays JSON; the same input always
gives the same output.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.calls.redaction import Pseudonymiser, memoised, pseudonym_of, redact
from gateway.spec.compiled import RedactionRules
from tests.support import properties

# Each test runs with the compiled row loops and with their pure-Python twins.
pytestmark = pytest.mark.usefixtures("row_loops")

KEY = b"property-test-key-0123456789abcdef"
PSEUDONYMISED = ("email", "firstName", "recipients")
DROPPED = ("title", "city")
RULES = RedactionRules(pseudonymise=frozenset(PSEUDONYMISED), drop=frozenset(DROPPED),
                       scrub_text=True)
PROPERTY = properties(100)

# Every generated local part holds one of these letters (or a letter outside ASCII), and nothing
# else that is generated or that redaction writes does (policy keys, filler, separators,
# "person-<hex>@pseudonym.invalid", "anon-<hex>"): a local part found in the output leaked.
MARKERS = "ghjkqwxzGHJKQWXZ"
FILLER = "abcdef0123456789 ,;:!?()[]"
BEFORE = [" ", "\n", "<", "(", "\"", "“", "«", ": ", "mailto:", "%20", "%3D", "?email=",
          "https://crm.test/find?q=", "&to="]
AFTER = [" ", "\n", ">", ")", "\"", "”", "»", ",", ".", ";", "%20", "&page=2"]
PSEUDONYM_KEY = re.compile(r"person-[0-9a-f]{12}(?:@|%40|%2540)pseudonym\.invalid")
PSEUDONYM_VALUE = re.compile(r"person-[0-9a-f]{12}@pseudonym\.invalid|anon-[0-9a-f]{12}")


@dataclass(frozen=True)
class Address:
    """One generated address, as the data holds it and as what must not leak."""

    spelled: str
    """As it appears in the data."""
    secrets: tuple[str, ...]
    """What must not be found in the output: the address and its local part, as spelt and as
    decoded, and the first part of the local part, each of 3 characters or more."""


LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
UNICODE_LETTER = st.characters(categories=("Ll", "Lu", "Lo"), min_codepoint=0xC0)
LETTER = st.one_of(st.sampled_from(LOWER + LOWER.upper() + DIGITS), UNICODE_LETTER)
ATOM = st.text(LETTER, min_size=1, max_size=8)
FIRST_ATOM = st.tuples(st.one_of(st.sampled_from(MARKERS), UNICODE_LETTER),
                       st.text(st.one_of(LETTER, st.sampled_from("_-'")), max_size=8))
LABEL = st.one_of(st.text(st.sampled_from(LOWER + DIGITS), min_size=1, max_size=8),
                  st.text(UNICODE_LETTER, min_size=1, max_size=6))
TLD = st.one_of(st.text(st.sampled_from(LOWER), min_size=2, max_size=6),
                st.text(UNICODE_LETTER, min_size=2, max_size=4),
                st.text(st.sampled_from(LOWER + DIGITS), min_size=2, max_size=8).map(
                    lambda tail: f"xn--{tail}"))
CASES: st.SearchStrategy[Callable[[str], str]] = st.sampled_from(
    [str, str.upper, str.lower, str.title])
AT_SIGNS = st.sampled_from([("@", 0), ("@", 1), ("%40", 1), ("%2540", 2)])


@st.composite
def addresses(draw: st.DrawFn) -> Address:
    """An address, in one case, its at-sign perhaps percent-encoded and then perhaps the rest."""
    first = "".join(draw(FIRST_ATOM))
    local = ".".join([first, *draw(st.lists(ATOM, max_size=2))])
    if draw(st.booleans()):
        local += "+" + draw(ATOM)
    domain = ".".join([*draw(st.lists(LABEL, min_size=1, max_size=3)), draw(TLD)])
    case = draw(CASES)
    local, domain = case(local), case(domain)
    at, depth = draw(AT_SIGNS)
    spelled_local, spelled_domain = local, domain
    if depth and (at == "@" or draw(st.booleans())):
        for _ in range(depth):
            spelled_local = quote(spelled_local, safe="")
            spelled_domain = quote(spelled_domain, safe="")
    spelled = f"{spelled_local}{at}{spelled_domain}"
    secrets = {local, f"{local}@{domain}", spelled_local, case(first), spelled}
    return Address(spelled, tuple(s for s in secrets if len(s) >= 3))


@dataclass(frozen=True)
class Slot:
    """Where the document holds an address: the how-many-th generated one, bare or in text."""

    index: int
    around: tuple[str, str, str, str] | None


def any_case(key: str, upper: int) -> str:
    return "".join(c.upper() if upper >> i & 1 else c.lower() for i, c in enumerate(key))


AROUND = st.tuples(st.text(FILLER, max_size=12), st.sampled_from(BEFORE), st.sampled_from(AFTER),
                   st.text(FILLER, max_size=12))
SLOTS = st.builds(Slot, st.integers(0, 3), st.none() | AROUND)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**31, 2**31),
                    st.floats(-1e9, 1e9, allow_nan=False), st.text(FILLER, max_size=10))
KEYS = st.one_of(st.text(st.sampled_from("abcdef_0123456789"), min_size=1, max_size=8),
                 st.builds(any_case, st.sampled_from(PSEUDONYMISED + DROPPED),
                           st.integers(0, 2**10)),
                 st.builds(Slot, st.integers(0, 3), st.none()))
TREES = st.recursive(st.one_of(SCALARS, SLOTS),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(KEYS, inner, max_size=5)),
                     max_leaves=24)


@st.composite
def documents(draw: st.DrawFn) -> tuple[Any, list[Address]]:
    """A JSON value holding every generated address at least once, in some context."""
    found = draw(st.lists(addresses(), min_size=1, max_size=4))

    def filled(value: Any) -> Any:
        if isinstance(value, Slot):
            spelled = found[value.index % len(found)].spelled
            if value.around is None:
                return spelled
            before, opening, closing, after = value.around
            return f"{before}{opening}{spelled}{closing}{after}"
        if isinstance(value, list):
            return [filled(item) for item in value]
        if isinstance(value, dict):
            return {filled(key): filled(item) for key, item in value.items()}
        return value

    notes = [filled(Slot(index, draw(AROUND))) for index in range(len(found))]
    return {"rows": filled(draw(TREES)), "notes": notes}, found


def redacted(value: Any) -> Any:
    return redact(value, RULES, Pseudonymiser(KEY, "acc_1", pseudonym_of))


@PROPERTY
@given(documents())
def test_no_generated_address_survives_anywhere_in_the_redacted_output(
        document: tuple[Any, list[Address]]) -> None:
    value, found = document
    output = orjson.dumps(redacted(value)).decode().casefold()
    for address in found:
        for secret in address.secrets:
            assert secret.casefold() not in output, (secret, address.spelled)


@PROPERTY
@given(documents())
def test_the_redacted_output_is_json_of_the_same_shape(
        document: tuple[Any, list[Address]]) -> None:
    value, found = document
    output = redacted(value)
    assert orjson.loads(orjson.dumps(output)) == output
    assert_same_shape(value, output, {a.spelled for a in found}, pseudonymised=False)


@PROPERTY
@given(documents())
def test_redaction_is_deterministic_and_leaves_its_input_alone(
        document: tuple[Any, list[Address]]) -> None:
    value, _ = document
    before = copy.deepcopy(value)
    first = redacted(value)
    again = redact(copy.deepcopy(value), RULES, Pseudonymiser(KEY, "acc_1", memoised(8)))
    assert orjson.dumps(first) == orjson.dumps(again)
    assert value == before


def assert_same_shape(before: Any, after: Any, spelled: set[str], *, pseudonymised: bool) -> None:
    """Same keys (bar dropped ones, and addresses, now pseudonyms, perhaps merged), same list
    lengths, scalars untouched; strings stay strings (pseudonyms under a pseudonymised key)."""
    if isinstance(before, dict):
        assert isinstance(after, dict)
        kept = {k for k in before if k not in spelled
                and (pseudonymised or k.casefold() not in {d.casefold() for d in DROPPED})}
        assert {k for k in after if not PSEUDONYM_KEY.fullmatch(k)} == kept
        renamed = [k for k in before if k in spelled]
        merged = [k for k in after if PSEUDONYM_KEY.fullmatch(k)]
        assert bool(merged) == bool(renamed) and len(merged) <= len(renamed)
        for key in kept:
            inner = pseudonymised or key.casefold() in {p.casefold() for p in PSEUDONYMISED}
            assert_same_shape(before[key], after[key], spelled, pseudonymised=inner)
    elif isinstance(before, list):
        assert isinstance(after, list) and len(after) == len(before)
        for old, new in zip(before, after, strict=True):
            assert_same_shape(old, new, spelled, pseudonymised=pseudonymised)
    elif isinstance(before, str):
        assert isinstance(after, str)
        if pseudonymised and before:
            assert PSEUDONYM_VALUE.fullmatch(after), (before, after)
    else:
        assert type(after) is type(before) and after == before


def test_remembered_pseudonyms_are_bounded_and_stay_the_same() -> None:
    remembered = memoised(3)
    people = [f"person{n}@example.com" for n in range(10)]
    for account in ("acc_1", "acc_2"):
        for person in people * 2:
            assert remembered(KEY, account, person) == pseudonym_of(KEY, account, person)
            held = sum(len(remembered.table(KEY, name)) for name in ("acc_1", "acc_2"))
            assert 1 <= held <= 3  # forgotten whole once over the bound, then made again
    # the table read by the one-pass page is the one the walk fills
    table = Pseudonymiser(KEY, "acc_3", remembered).table()
    assert table is not None and table["x@y.org"] == pseudonym_of(KEY, "acc_3", "x@y.org")
    assert Pseudonymiser(KEY, "acc_3").table() is None
