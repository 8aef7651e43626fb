"""Pruned decoding: what of an upstream answer a tool's selection reads, and a decoder that
builds only that. Pure.

A list page of 50 rows of 33 fields, of which the selection keeps 20, is mostly built to be
thrown away: decoding it whole and freeing it was the largest part of a call that a proxy does
not have. `reads` walks a JMESPath parse tree and says which keys of which objects (and the
items of which lists) it can look at; `PrunedDecoder` turns that into msgspec types that skip
everything else while parsing. Evaluating the expression on the pruned document gives what it
gives on the whole one, because every value the expression looks at, tests for truth or passes
to a function is kept whole.

The pruned path stands aside (`NotPruned`), and the caller decodes the whole body with orjson,
whenever the answers could differ: an expression with a node this walk does not know (`*`, sort_by's
`&`), a document whose shape does not fit (a string where an object is read),
anything msgspec refuses, and integers beyond 64 bits (orjson reads those as floats, msgspec as
exact integers; the compiled `wide_ints` finds them). The check needs the compiled row loops
(gateway/native), so with them off or not built every answer is decoded whole.

One difference is kept on purpose: parts of an answer that the tool never reads are checked as
JSON syntax but not for bad UTF-8 or floats out of range, which orjson would refuse whole.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import msgspec

from gateway import native


class Whole:
    """The value is read whole (returned, tested for truth, passed to a function)."""

    def __repr__(self) -> str:
        return "WHOLE"


WHOLE: Final = Whole()


@dataclass(frozen=True, slots=True)
class Keys:
    """An object of which only these keys are read (each with what is read of it)."""

    fields: dict[str, Need]


@dataclass(frozen=True, slots=True)
class Items:
    """A list whose every item is read so."""

    each: Need


Need = Whole | Keys | Items | None
"""What is read of a value; None: nothing (a literal reads no input)."""


class Unsupported(Exception):
    """A node whose reads this walk does not know: the answer is decoded whole."""


class NotPruned(ValueError):
    """This body is not decoded pruned; decode it whole."""


def reads(node: dict[str, Any], then: Need = WHOLE) -> Need:
    """What `node` reads of its input, when `then` is what is read of its output.

    Raises:
        Unsupported: a node type (or an `&expression` argument) this walk does not know.
    """
    kind, children = node["type"], node.get("children", [])
    if kind == "field":
        return Keys({node["value"]: _child(then)})
    if kind in ("current", "identity"):
        return then
    if kind == "literal":
        return None
    if kind in ("subexpression", "index_expression", "pipe"):
        for child in reversed(children):  # each step reads what the next one reads of it
            then = reads(child, then)
        return then
    if kind == "index":  # one item, read as its output is
        return Items(_child(then))
    if kind == "slice":  # some items, each read as the output's items are
        return Items(_child(then.each)) if isinstance(then, Items) else WHOLE
    if kind == "flatten":
        # The output's items are the input's items and the items of its nested lists: read
        # as objects, a nested list does not decode (and the answer is decoded whole).
        if isinstance(then, Items) and isinstance(then.each, Keys):
            return reads(children[0], then)
        return reads(children[0], Items(WHOLE) if isinstance(then, Items) else WHOLE)
    if kind == "projection":
        each = reads(children[1], then.each if isinstance(then, Items) else WHOLE)
        return reads(children[0], Items(_child(each)))
    if kind in ("multi_select_dict", "multi_select_list"):
        values = (c["children"][0] if c["type"] == "key_val_pair" else c for c in children)
        return _union_all(reads(value) for value in values)
    if kind in ("or_expression", "and_expression"):  # the left side's truth is tested
        return union(reads(children[0]), reads(children[1], then))
    if kind in ("not_expression", "comparator"):  # values tested or compared whole
        return _union_all(reads(child) for child in children)
    if kind == "filter_projection":  # left[?condition].right
        each = reads(children[1], then.each if isinstance(then, Items) else WHOLE)
        return reads(children[0], Items(_child(union(reads(children[2]), each))))
    if kind == "function_expression" and all(c["type"] != "expref" for c in children):
        return _union_all(reads(argument) for argument in children)
    raise Unsupported(kind)


def _child(need: Need) -> Need:
    """Nothing read of a value that must still be there (and be null or not) keeps it whole."""
    return WHOLE if need is None else need


def union(first: Need, second: Need) -> Need:
    """What two readers of one value read of it together."""
    if first is None:
        return second
    if second is None:
        return first
    if isinstance(first, Keys) and isinstance(second, Keys):
        merged = dict(first.fields)
        for key, need in second.fields.items():
            merged[key] = union(merged[key], need) if key in merged else need
        return Keys(merged)
    if isinstance(first, Items) and isinstance(second, Items):
        return Items(union(first.each, second.each))
    return WHOLE  # whole, or read both as an object and as a list: keep it as it is


def _union_all(needs: Any) -> Need:
    total: Need = None
    for need in needs:
        total = union(total, need)
    return total


def _skips_in_rows(need: Need) -> bool:
    """Whether the items of some list are read only in part. msgspec decodes what it keeps
    more slowly than orjson, so pruning pays only where much is skipped: in rows, not in the
    envelope of an answer that is otherwise kept whole."""
    if isinstance(need, Keys):
        return any(_skips_in_rows(each) for each in need.fields.values())
    return isinstance(need, Items) and (isinstance(need.each, Keys) or _skips_in_rows(need.each))


_names: Final = itertools.count()
_typed_dict: Any = TypedDict  # called with fields known only at run time


def msgspec_type(need: Need) -> Any:
    """The msgspec type that decodes what is read and skips the rest; null is always allowed
    where an object or a list is read (a field of null is null)."""
    if isinstance(need, Keys):
        fields = {key: msgspec_type(value) for key, value in need.fields.items()}
        return _typed_dict(f"Read{next(_names)}", fields, total=False) | None
    if isinstance(need, Items):
        return list[msgspec_type(need.each)] | None  # type: ignore[misc]
    return Any


class PrunedDecoder:
    """Decodes an answer keeping only what a parse tree reads. What the tree reads is worked out
    once, when the decoder is made (at spec load); the msgspec types are built on first use, so
    that loading a large tree does not build decoders for tools never called."""

    __slots__ = ("_need", "_decoder")

    def __init__(self, parsed: dict[str, Any]) -> None:
        try:
            need = reads(parsed)
        except Unsupported:
            need = None
        # Nothing to skip in rows: orjson decodes the whole answer faster than msgspec would.
        self._need = need if _skips_in_rows(need) else None
        self._decoder: msgspec.json.Decoder[Any] | None = None

    @classmethod
    def reading(cls, need: Need) -> PrunedDecoder:
        """A decoder of exactly `need`, rows or not: the rest of an answer whose rows are read
        elsewhere (gateway/spec/pages.py)."""
        decoder = cls.__new__(cls)
        decoder._need = need
        decoder._decoder = None
        return decoder

    @property
    def prunes(self) -> bool:
        """Whether any answer is decoded pruned (else every one is left to orjson)."""
        return self._need is not None

    def __call__(self, raw: bytes) -> Any:
        """Raises:
            NotPruned: decode this body whole (see the module's docstring).
        """
        return self.decode(raw)

    def decode(self, raw: bytes) -> Any:
        """The body decoded to what is read (a part of an answer, for gateway/spec/pages.py).

        Raises:
            NotPruned: see __call__.
        """
        loops = native.rows()
        if loops is None or self._need is None:
            raise NotPruned
        decoder = self._decoder or self._build(self._need)
        try:
            body = decoder.decode(raw)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise NotPruned from exc
        if loops.wide_ints(body):
            raise NotPruned
        return body

    def _build(self, need: Need) -> msgspec.json.Decoder[Any]:
        self._decoder = msgspec.json.Decoder(msgspec_type(need))
        return self._decoder


def pruning_decoder(parsed: dict[str, Any]) -> PrunedDecoder | None:
    """The decoder of a selection that reads some rows in part, or None: decided at spec load,
    so that a call of any other tool goes straight to orjson."""
    decoder = PrunedDecoder(parsed)
    return decoder if decoder.prunes else None
