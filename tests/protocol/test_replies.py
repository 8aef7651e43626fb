"""A tool result's reply is assembled around the JSON its budget measured (encode_reply): byte
for byte the JSON-RPC response orjson writes for the whole result, in both eras, with the C loops
and with their pure-Python twins; and its text copy (`json_text`) is exactly orjson's JSON string
of the text, however the text is made."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocol.envelope import LEGACY_VERSIONS, MODERN, Inbound
from gateway.protocol.methods import Outcome, server_info
from gateway.protocol.replies import encode_reply, json_text, shape_result
from gateway.settings import SHIPPED_SPECS
from gateway.spec.loader import load_tree
from tests.support import properties

pytestmark = pytest.mark.usefixtures("row_loops")
PROPERTY = properties(300, HealthCheck.function_scoped_fixture)
SERVICE = next(s for s in load_tree(SHIPPED_SPECS, {}).services if s.name == "retently")

# Every character orjson escapes (quote, backslash, the control characters) and the ones it
# does not (DEL, separators JavaScript minds, characters of 2, 3 and 4 UTF-8 bytes).
TEXT = st.text(alphabet=st.one_of(
    st.sampled_from('"\\\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f/\u2028\u2029é€😀 '),
    st.characters(codec="utf-8")), max_size=40)
DOCUMENTS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), TEXT,
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20)


@PROPERTY
@given(TEXT)
def test_the_text_copy_is_orjsons_string_of_the_text(text: str) -> None:
    assert json_text(text.encode()) == orjson.dumps(text)


@pytest.mark.parametrize("filler", ["a", '"', "\\", "\x01", "\n", "é"])
def test_escapes_at_every_place_in_a_word_and_past_its_end(filler: str) -> None:
    """Eight bytes are read at a time: an escape at each offset of texts of 1 to 26 characters,
    so tails shorter than a word too."""
    for length in range(26):
        for at in range(length + 1):
            text = "x" * at + filler + "y" * (length - at)
            assert json_text(text.encode()) == orjson.dumps(text)


@PROPERTY
@given(st.text(alphabet='"\\abé€\n', min_size=16, max_size=90))
def test_words_with_several_quotes_and_backslashes_are_escaped_whole(text: str) -> None:
    """JSON text has a quote every eight bytes or so: words holding several, side by side, at
    the ends, or with a control character among them, each escaped as orjson does."""
    assert json_text(text.encode()) == orjson.dumps(text)


def test_a_text_of_nothing_but_escapes_grows_its_room() -> None:
    """Each control character takes six bytes: far more than the room first made for it."""
    text = "\x01" * 10_000 + '"' * 10_000
    assert json_text(text.encode()) == orjson.dumps(text)


def inbound(era: str) -> Inbound:
    version = MODERN if era == "modern" else LEGACY_VERSIONS[-1]
    return Inbound(era, version, "tools/call", {"name": "list_feedback"}, 7)  # type: ignore[arg-type]


@settings(PROPERTY, max_examples=100)  # nested documents: the escaping is covered above
@given(st.dictionaries(TEXT, DOCUMENTS, max_size=5), st.sampled_from(["legacy", "modern"]))
def test_a_tool_reply_is_the_json_of_the_whole_result(result: dict[str, Any], era: str) -> None:
    request = inbound(era)
    encoded = orjson.dumps(result)
    reply = encode_reply(request, SERVICE, Outcome({"isError": False}, structured=encoded), {})

    rest = shape_result(request, {"isError": False}, server_info(SERVICE), validated=True)
    whole = {"content": [{"type": "text", "text": encoded.decode()}], **rest,
             "structuredContent": result}
    assert reply == orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": whole})
    assert ("resultType" in orjson.loads(reply)["result"]) is (era == "modern")
