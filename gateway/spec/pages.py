"""Pages of rows shaped in one pass over their bytes: which selections qualify, and the decoder
that keeps their rows as JSON bytes. Pure.

A list page is most of what a call costs beyond a proxy: decoding its rows into objects,
selecting fields into new ones, copying those to de-identify them, encoding the copies and
freeing all three. For a selection of plain fields over the rows of one list,

    path[].{name: key, ...}       or      {items: path[].{name: key, ...}, page: ..., ...}

(the other entries reading anything but that list; a field may also be one object's plain
fields, `name: {sub: key.sub, ...}`), and for the list's items taken whole, `{items: path,
...}` (the shipped specs name a result's list `items`; another entry holding a list is not
guessed at), the compiled pass (`page` in
gateway/native/_pages.c) finds the list in the answer's bytes and writes each row's selected,
de-identified JSON straight from them (gateway/calls/pages.py); the rest of the answer, with
the list taken out, is decoded pruned (gateway/spec/reads.py) for the other entries. It gives
what the whole path gives, byte for byte, or declines, and then the answer is decoded as any
other.

Tools with content templates do not qualify: those read the result's rows as objects. Extra
entries are added to the result as they are to any other (gateway/calls/pipeline.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from gateway import native
from gateway.records import record
from gateway.spec.jmes import Evaluate, evaluator
from gateway.spec.reads import (
    Keys,
    Need,
    NotPruned,
    PrunedDecoder,
    Unsupported,
    pruning_decoder,
    reads,
    union,
)

Plain = tuple[str, bytes, str]
"""(name in the result, that name as JSON, key in the row or in the nested object)."""
Field = tuple[str, bytes, str, tuple[Plain, ...]]
"""A plain field and, for `name: {sub: key.sub, ...}`, the nested object's plain fields (empty
for a plain one)."""


@dataclass(frozen=True, slots=True)
class RowPage:
    """Where the rows are and what of each is selected, and the result's other entries."""

    path: tuple[str, ...]
    """The keys leading to the list, from the top of the answer."""
    key: str
    """The result's key holding the rows."""
    fields: tuple[Field, ...]
    """The selection's fields, in its order; none: the items are taken whole."""
    entries: tuple[tuple[str, Evaluate | None], ...] = ()
    """The result's entries in order, each evaluated on the answer (None: the rows); empty
    when the selection is the projection alone, whose list becomes `items`."""
    rest: Need = None
    """What the other entries read of the answer (never the list)."""


def row_page(parsed: dict[str, Any]) -> RowPage | None:
    """The page of rows a selection's parse tree reads, if it qualifies (module docstring)."""
    if parsed["type"] != "multi_select_dict":
        found = _projection(parsed)
        return None if found is None else RowPage(found[0], "items", found[1])
    pairs = [(pair["value"], pair["children"][0]) for pair in parsed["children"]]
    if len({key for key, _ in pairs}) != len(pairs):
        return None  # a repeated key: the last entry stands where the first did
    for index, (key, node) in enumerate(pairs):
        found = _projection(node)
        if found is None and key == "items" and (whole := _field_path(node)) is not None:
            found = whole, ()  # `items: path`, the list's items taken whole
        if found is None or _has_address(key):
            continue
        path, fields = found
        rest: Need = None
        try:
            for position, (_, other) in enumerate(pairs):
                if position != index:
                    read = reads(other)
                    if _reads_path(read, path):
                        return None
                    rest = union(rest, read)
        except Unsupported:
            return None
        entries = tuple((name, None if position == index else evaluator(node))
                        for position, (name, node) in enumerate(pairs))
        return RowPage(path, key, fields, entries, rest)
    return None


def _projection(node: dict[str, Any]) -> tuple[tuple[str, ...], tuple[Field, ...]] | None:
    """`path[].{...}`, `path[*].{...}` or `a.b[*].{...}` over plain fields: (path, fields)."""
    prefix: tuple[str, ...] = ()
    if node["type"] == "subexpression":
        *steps, node = node["children"]
        prefix = _field_path({"type": "subexpression", "children": steps}) or ()
        if not steps or len(prefix) != len(steps):
            return None
    if node["type"] != "projection":
        return None
    left, right = node["children"]
    if left["type"] == "flatten":
        left = left["children"][0]
    path = _field_path(left)
    if path is None or right["type"] != "multi_select_dict":
        return None
    fields: list[Field] = []
    for pair in right["children"]:
        value = pair["children"][0]
        nested = _nested(value) if value["type"] == "multi_select_dict" else None
        if nested is not None:
            key, subs = nested
        elif value["type"] == "field":
            key, subs = value["value"], ()
        else:
            return None
        if _has_address(pair["value"]) or _has_address(key):
            return None
        fields.append((pair["value"], orjson.dumps(pair["value"]), key, subs))
    return prefix + path, tuple(fields)


def _nested(node: dict[str, Any]) -> tuple[str, tuple[Plain, ...]] | None:
    """`{sub: key.sub, ...}`: one object's plain fields (key, its fields), or None."""
    keys, subs = set(), []
    for pair in node["children"]:
        value = pair["children"][0]
        steps = value["children"] if value["type"] == "subexpression" else ()
        if len(steps) != 2 or any(step["type"] != "field" for step in steps):
            return None
        (key, sub), name = (step["value"] for step in steps), pair["value"]
        if _has_address(name) or _has_address(sub):
            return None
        keys.add(key)
        subs.append((name, orjson.dumps(name), sub))
    if len(keys) != 1 or len({name for name, _, _ in subs}) != len(subs):
        return None  # two objects, or a repeated name: the last entry stands
    return keys.pop(), tuple(subs)


def _field_path(node: dict[str, Any]) -> tuple[str, ...] | None:
    if node["type"] == "field":
        return (node["value"],)
    if node["type"] != "subexpression":
        return None
    path: tuple[str, ...] = ()
    for child in node["children"]:
        step = _field_path(child)
        if step is None:
            return None
        path += step
    return path


def _has_address(key: str) -> bool:
    """A key the policy could rename (it holds an address): left to the whole path."""
    return "@" in key or "%" in key


def _reads_path(need: Need, path: tuple[str, ...]) -> bool:
    """Whether what is read (`need`) includes the list at `path`, or could."""
    for key in path:
        if need is None:
            return False
        if not isinstance(need, Keys):
            return True  # read whole, or as a list: the rows would be read
        if key not in need.fields:
            return False
        need = need.fields[key]
    return need is not None


WHOLE_ITEMS_FROM: Final = 8_192
"""Bytes of an answer from which a page of items taken whole is made in one pass. Below, the
answer is decoded whole: the pass's fixed part (the rest of the answer decoded apart, the size
bound, the fragments) costs about what it saves on a few kilobytes of items (0.5-2.5% more
instructions a call for answers of 47 bytes to 4 KB, 13% fewer at 12 KB; bench/README.md)."""


@record
class PageAnswer:
    """An answer left as its bytes for the one-pass page, and what the whole path needs."""

    decoder: PageDecoder
    raw: bytes
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def page(self) -> RowPage:
        return self.decoder.page


class PageDecoder:
    """Leaves an answer as its bytes (a PageAnswer) for the one-pass page, whose caller knows
    the policy; decodes the rest of it once the list is taken out (`envelope`). A drop-in for
    the pruned decoder, which is the whole path's (`fallback`; None where nothing is pruned:
    decoded whole)."""

    __slots__ = ("_rest", "fallback", "page", "policies")

    def __init__(self, page: RowPage, parsed: dict[str, Any]) -> None:
        self.page = page
        self.fallback = pruning_decoder(parsed)
        self._rest = (None if page.rest is None or not page.fields
                      else PrunedDecoder.reading(page.rest))
        self.policies: dict[Any, Any] = {}
        """The call side's fields under each policy met, worked out once (calls/pages.py)."""

    def __call__(self, raw: bytes) -> PageAnswer:
        """Raises:
            NotPruned: the compiled pass is off: decode this body whole.
        """
        if native.rows() is None or (not self.page.fields and len(raw) < WHOLE_ITEMS_FROM):
            raise NotPruned
        return PageAnswer(self, raw)

    def envelope(self, rest: bytes) -> Any:
        """The answer without its list (an empty one in its place), decoded to what the other
        entries read.

        Raises:
            NotPruned: not as the whole path would decode it (see gateway/spec/reads.py).
        """
        if not self.page.fields:  # items taken whole: read as strictly as the whole path reads
            try:                   # the answer (orjson), the parts no entry reads included
                return orjson.loads(rest)
            except orjson.JSONDecodeError as refused:
                raise NotPruned from refused
        return None if self._rest is None else self._rest.decode(rest)


def page_decoder(parsed: dict[str, Any]) -> PageDecoder | None:
    """The decoder of a selection that qualifies (module docstring), or None: decided at spec
    load."""
    page = row_page(parsed)
    return None if page is None else PageDecoder(page, parsed)
