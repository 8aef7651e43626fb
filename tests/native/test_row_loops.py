"""The compiled row loops (gateway/native/_rows.c) give byte for byte what their pure-Python
twins give, on generated documents and on the inputs a C loop gets wrong most easily: other
container types, deep nesting, failing callbacks, keys of every kind. The tests of redaction and
JMESPath (tests/calls, tests/spec) also run whole against both."""

from __future__ import annotations

import shutil
import sysconfig
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import jmespath
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import native
from gateway.calls.redaction import Pseudonymiser, memoised, redact
from gateway.spec.compiled import RedactionRules
from gateway.spec.jmes import OPTIONS, compile_expression, search
from tests.support import properties

KEY = b"row-loops-test-key-0123456789abcdef"
RULES = RedactionRules(pseudonymise=frozenset({"email", "firstName", "assigned"}),
                       drop=frozenset({"city", "customProps"}), scrub_text=True)
NO_SCRUB = RedactionRules(pseudonymise=RULES.pseudonymise, drop=RULES.drop, scrub_text=False)
PROPERTY = properties(150)

needs_built = pytest.mark.skipif(not native.built(), reason="the C row loops are not built")

KEYS = st.sampled_from([
    "id", "score", "comment", "tags", "email", "EMAIL", "Email", "firstName", "FIRSTNAME",
    "assigned", "city", "City", "customProps", "jane@example.com", "JANE@example.com",
    "jane%40example.com", "note", "", "ß", "straße@example.de"])
TEXT = st.sampled_from([
    "", "plain text", "jane@example.com", "Write to JANE@Example.com today",
    "https://crm.test/find?q=jane%40example.com", "100%", "a@b", "ü@ä.de", "@", "%",
    "mail bob@example.org and jane@example.com", "x" * 70])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=False, allow_infinity=False), TEXT)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=30)


def both(run: Callable[[], Any]) -> tuple[Any, Any]:
    """What `run` gives (or raises) with the compiled loops, then with the Python ones."""
    outcomes: list[tuple[Any, ...]] = []
    for compiled in (True, False):
        native.use_native(compiled)
        try:
            outcomes.append(("ok", orjson.dumps(run())))
        except Exception as exc:  # the same failure is part of the same behaviour
            outcomes.append(("error", type(exc).__name__, str(exc)))
    return outcomes[0], outcomes[1]


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    before = native.rows() is not None
    yield
    native.use_native(before)


def pseudonymiser() -> Pseudonymiser:
    return Pseudonymiser(KEY, "acct-1", memoised(256))


@needs_built
@PROPERTY
@given(DOCUMENTS, st.sampled_from([RULES, NO_SCRUB]))
def test_redaction_is_the_same_in_c_and_python(document: Any, rules: RedactionRules) -> None:
    compiled, python = both(lambda: redact(document, rules, pseudonymiser()))
    assert compiled == python


@needs_built
@pytest.mark.parametrize("document", [
    OrderedDict([("email", "jane@example.com"), ("n", ("bob@example.org", 1))]),
    ("jane@example.com", {"email": "x"}),
    [OrderedDict(firstName="Jane")],
    {"email": ["jane@example.com", None, 3, {"email": "bob@example.org"}]},
    {"email": {"jane@example.com": 2, "JANE@example.com": 3}},
    {"jane@example.com": 1, "JANE@EXAMPLE.COM": 2, "other": "x"},
    {"email": "", "firstName": None, "assigned": 0, "city": "Ghent", "customProps": {}},
    {"tags": [], "note": {}, "flag": False, "n": 0},
    "jane@example.com", None, 1.5,
])
def test_containers_of_other_types_and_merged_keys_agree(document: Any) -> None:
    compiled, python = both(lambda: redact(document, RULES, pseudonymiser()))
    assert compiled == python
    assert compiled[0] == "ok"


@needs_built
def test_deep_nesting_is_a_recursion_error_in_both() -> None:
    document: Any = "jane@example.com"
    for _ in range(20_000):
        document = [document]
    compiled, python = both(lambda: redact(document, RULES, pseudonymiser()))
    assert compiled[:2] == python[:2] == ("error", "RecursionError")


@needs_built
def test_a_failing_pseudonym_surfaces_as_the_same_exception() -> None:
    def refuse(_key: bytes, _account: str, value: str) -> str:
        raise ValueError(f"cannot pseudonymise {len(value)} characters")

    failing = Pseudonymiser(KEY, "acct-1", refuse)
    compiled, python = both(lambda: redact({"rows": [{"email": "jane@example.com"}]},
                                           RULES, failing))
    assert compiled == python == ("error", "ValueError", "cannot pseudonymise 16 characters")


@needs_built
def test_the_compiled_walk_copies_and_never_changes_its_input() -> None:
    document = {"rows": [{"email": "jane@example.com", "city": "Ghent", "tags": ["a@b.co"]}]}
    before = orjson.dumps(document)
    native.use_native(True)
    redacted = redact(document, RULES, pseudonymiser())
    assert orjson.dumps(document) == before
    assert redacted["rows"][0]["email"].endswith("@pseudonym.invalid")
    assert "city" not in redacted["rows"][0]


PLAIN_SELECTIONS = ["{x: a, y: b}", "a[].{n: name, t: tags}", "{a: a, a2: a}", "[].{b: b}",
                    "a[*].{c: c}"]
SELECTED = [{"a": [{"name": "n", "tags": ["t"], "c": 1}, {"c": None}, 3, None, "s", []],
             "b": {"c": 0}},
            {"a": "text", "b": None}, {"a": OrderedDict(name="o")}, [], [{"b": 1}, 2, None],
            None, 0, "x", {}]


@needs_built
@pytest.mark.parametrize("expression", PLAIN_SELECTIONS)
def test_plain_field_selection_agrees_with_the_interpreter(expression: str) -> None:
    for document in SELECTED:
        expected = orjson.dumps(jmespath.search(expression, document, options=OPTIONS))

        def selected(document: Any = document) -> Any:
            return search(compile_expression(expression), document)
        compiled, python = both(selected)
        assert compiled == python == ("ok", expected), document


@needs_built
def test_the_compiled_selection_is_the_extension_and_the_fallback_is_python() -> None:
    native.use_native(True)
    picked = compile_expression("{x: a}").evaluate
    assert getattr(picked, "func", None) is native.rows().pick  # type: ignore[union-attr]
    native.use_native(False)
    assert getattr(compile_expression("{x: a}").evaluate, "func", None) is None


@needs_built
@pytest.mark.parametrize(("value", "wide"), [
    (2**63 - 1, False), (2**63, False), (2**64 - 1, False), (2**64, True),
    (-2**63, False), (-2**63 - 1, True), (True, False), (1.8e19, False), ("18446744073709551616",
                                                                        False),
    ({"a": [1, {"b": [2, 2**70]}]}, True), ({"a": [1, {"b": [2, -2**70]}]}, True),
    ([{"x": None}, [], {}], False),
])
def test_wide_ints_are_the_integers_orjson_cannot_take(value: Any, wide: bool) -> None:
    """orjson reads such a number as a float and cannot write it back as an integer."""
    assert native.rows().wide_ints(value) is wide  # type: ignore[union-attr]
    try:
        orjson.dumps(value)
        encodes = True
    except orjson.JSONEncodeError:
        encodes = False
    assert encodes is not wide


@needs_built
def test_wide_ints_is_bounded_in_depth() -> None:
    nested: Any = 0
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(RecursionError):
        native.rows().wide_ints(nested)  # type: ignore[union-attr]


def test_use_native_reports_what_runs() -> None:
    assert native.use_native(False) is False
    assert native.rows() is None
    assert native.use_native(True) is native.built()
    assert (native.rows() is not None) is native.built()


def test_the_extension_is_built_wherever_a_compiler_was_at_hand() -> None:
    """An install that had a C compiler must have built the loops: `optional=True` in setup.py
    would otherwise hide a broken build behind the slower fallback."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]

    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) here: the pure-Python loops are what runs")
    assert native.built(), "a C compiler is at hand but gateway/native/_rows was not built"


@needs_built
def test_quoted_takes_bytes_and_nothing_else() -> None:
    """The text copy is made from the result's JSON bytes; a str (or a bytearray) is refused,
    never read as memory of another layout."""
    for wrong in ("text", bytearray(b"text"), memoryview(b"text"), None):
        with pytest.raises(TypeError, match="quoted"):
            native.rows().quoted(wrong)  # type: ignore[union-attr]
