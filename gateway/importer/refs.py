"""Local `$ref`s of an OpenAPI document (`#/components/...`, `#/definitions/...`): followed to
their target, with chains and cycles bounded. Pure. A reference into another file, or to
nothing, is unresolved: its caller reports it and goes on.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote

MAX_HOPS: Final = 32
"""Longest chain of objects that only refer on (`$ref` to a `$ref` ...) before giving up."""


class Document:
    """The parsed document, for looking up what its references point at."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.unresolved: set[str] = set()
        """Every reference that pointed nowhere (or outside the document), for the report."""

    def target(self, ref: str) -> Any:
        """The value a local JSON pointer (`#/a/b~1c`) names, or None."""
        if not ref.startswith("#"):
            self.unresolved.add(ref)
            return None
        node: Any = self.root
        pointer = unquote(ref[1:])
        for raw in pointer.split("/")[1:] if pointer else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                self.unresolved.add(ref)
                return None
        return node

    def follow(self, node: Any) -> Any:
        """`node` with its `$ref` (and theirs) replaced by the target; keys written beside a
        `$ref` (a 3.1 `description`, say) win over the target's. None when unresolved or when
        the chain loops."""
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen or len(seen) >= MAX_HOPS:
                return None
            seen.add(ref)
            target = self.target(ref)
            if target is None:
                return None
            beside = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **beside} if beside and isinstance(target, dict) else target
        return node

    def mapping(self, node: Any) -> dict[str, Any]:
        """`follow(node)` when it is a mapping, else an empty one."""
        found = self.follow(node)
        return found if isinstance(found, dict) else {}
