"""The query as sent upstream: percent-encoded exactly as the standard library's urlencode
would, whatever the names and values (a faster path is taken for plain ones)."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode

from hypothesis import given
from hypothesis import strategies as st

from gateway.upstream.requests import UpstreamRequest, full_url
from tests.support import properties

texts = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "limit", "-createdDate", "a b", "x/y", "50", "ünï", "%41", "a&b=c", "~._-", "\x00"])


def request(query: list[tuple[str, str]]) -> UpstreamRequest:
    return UpstreamRequest("GET", "https://api.example/v2/feedback", query, {})


@properties(300)
@given(st.lists(st.tuples(texts, texts), max_size=6))
def test_the_query_is_encoded_as_urlencode_encodes_it(query: list[tuple[str, str]]) -> None:
    sent = full_url(request(query))
    if not query:
        assert sent == "https://api.example/v2/feedback"
        return
    assert sent == "https://api.example/v2/feedback?" + urlencode(query, quote_via=quote)
    # ...and reads back as the pairs given, so no value can add a parameter or end the query.
    assert parse_qsl(sent.partition("?")[2], keep_blank_values=True) == query


def test_plain_names_and_values_are_sent_as_they_are_and_the_rest_percent_encoded() -> None:
    sent = full_url(request([("limit", "50"), ("sort", "-createdDate"), ("q", "a b&c=d/é")]))
    assert sent.endswith("?limit=50&sort=-createdDate&q=a%20b%26c%3Dd%2F%C3%A9")
