"""The upstream lane's answer reader against h11 (a separate, well-kept HTTP/1.1 parser): any
well-formed answer, cut into packets anywhere, reads as h11 reads it."""

from __future__ import annotations

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream.http1 import AnswerReader

_NAME = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
                min_size=1, max_size=12).filter(
    lambda name: name.lower() not in ("content-length", "transfer-encoding", "connection"))
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=20)


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[str, str]], bytes]:
    status = draw(st.integers(200, 599).filter(lambda code: code not in (204, 304)))
    headers = draw(st.lists(st.tuples(_NAME, _VALUE), max_size=6))
    body = draw(st.binary(max_size=300))
    chunked = draw(st.booleans())
    head = [f"HTTP/1.1 {status} {draw(st.sampled_from(['OK', 'Fine by me', '']))}".rstrip()]
    head += [f"{name}: {value}" for name, value in headers]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces if piece)
        payload += b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload, status, headers, body


def h11_reads(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(raw)
    status, headers, body = 0, [], b""
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = [(k.decode(), v.decode()) for k, v in event.headers]
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage) or event is h11.NEED_DATA:
            return status, headers, body


@settings(max_examples=300, deadline=None)
@given(answers(), st.lists(st.integers(1, 400), max_size=6))
def test_an_answer_in_any_packets_reads_as_h11_reads_it(
        answer: tuple[bytes, int, list[tuple[str, str]], bytes], cuts: list[int]) -> None:
    raw, status, _headers, body = answer
    reader = AnswerReader(10_000)
    points = sorted({cut for cut in cuts if cut < len(raw)})
    packets = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    whole = False
    for packet in packets:
        assert not whole  # never whole before the last byte
        whole = reader.feed(packet)
    assert whole and reader.reusable
    theirs = h11_reads(raw)
    assert (reader.status, reader.body) == (theirs[0], theirs[2]) == (status, body)
    assert [(k.lower(), v) for k, v in reader.headers.items()] == theirs[1]
