"""The pages of the four list methods, and their cursors. Pure.

A list is what one caller may see of one service (the caller's scopes filter it), made once per
service, method and scope set and kept in a bounded cache the app passes in. A cursor is
base64url without padding of 13 bytes: the list method (1), the offset its page starts at (4)
and the list's fingerprint (8, a hash of the method and the names listed). Nothing is kept
between requests, so any replica serving the same tree continues a list another one began; a
cursor grants nothing, since the list is filtered by the caller's scopes whatever it says.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from gateway.errors import INVALID_PARAMS, ProtocolError
from gateway.records import record
from gateway.spec.compiled import CompiledService

Entries = Callable[[CompiledService, frozenset[str]], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ListMethod:
    tag: int
    """Which list a cursor continues (never reuse a tag: cursors outlive a release)."""
    key: str
    """The key of the entries in a result."""
    entries: Entries
    """What a caller with these scopes sees of a service, in catalog order."""


LIST_METHODS: Final[Mapping[str, ListMethod]] = {
    "tools/list": ListMethod(1, "tools", lambda service, scopes: service.tools_for(scopes)),
    "resources/list": ListMethod(2, "resources", lambda service, scopes: service.resources_for(
        scopes, templated=False)),
    "resources/templates/list": ListMethod(
        3, "resourceTemplates",
        lambda service, scopes: service.resources_for(scopes, templated=True)),
    "prompts/list": ListMethod(4, "prompts", lambda service, scopes: service.prompts_for(scopes)),
}
_BY_TAG: Final = {listed.tag: method for method, listed in LIST_METHODS.items()}
_LAYOUT: Final = struct.Struct(">BI8s")
CURSOR_CHARS: Final = 18
"""The length of every cursor: 13 bytes in base64url, unpadded."""

Refusal = Literal["malformed", "other_list", "list_changed", "out_of_range"]
"""Why a cursor was refused (the `reason` of the error's data)."""


class Position(NamedTuple):
    """What a cursor holds."""

    method: str
    offset: int
    """Where the page it asks for starts."""
    fingerprint: bytes
    """Of the list it continues, as its caller saw it."""


def encode_cursor(position: Position) -> str:
    raw = _LAYOUT.pack(LIST_METHODS[position.method].tag, position.offset, position.fingerprint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: Any) -> Position | None:
    """The position a cursor holds, or None for anything `encode_cursor` did not make."""
    if not isinstance(cursor, str) or len(cursor) != CURSOR_CHARS or not cursor.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "==")
    except ValueError:  # binascii.Error
        return None
    if len(raw) != _LAYOUT.size:
        return None
    tag, offset, fingerprint = _LAYOUT.unpack(raw)
    method = _BY_TAG.get(tag)
    if method is None:
        return None
    position = Position(method, offset, fingerprint)
    return position if encode_cursor(position) == cursor else None  # one spelling only


def fingerprint(method: str, entries: Sequence[dict[str, Any]]) -> bytes:
    """What a cursor binds to: the method and the names listed, in order. A reload that only
    rewords an entry keeps it (the pages still split the list the same way); one that adds,
    drops or moves an entry, or other scopes, changes it."""
    names = "\x00".join(str(entry["name"]) for entry in entries)
    return hashlib.blake2b(f"{method}\x00{names}".encode(), digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class Listing:
    """One caller's list of one service, made once."""

    entries: tuple[dict[str, Any], ...]
    fingerprint: bytes


@record
class Page:
    entries: list[dict[str, Any]]
    offset: int
    next_cursor: str | None
    """None on the last page."""


class Lists:
    """Pages of `page_size` entries of the lists callers see. Each list is made once per service,
    method and scope set and kept in `cache`, bounded by whoever makes it; a service compares by
    identity, so a reloaded tree never meets the lists of the one before."""

    def __init__(self, page_size: int, cache: MutableMapping[Any, Listing]) -> None:
        self.page_size = page_size
        """At least 1 (GATEWAY_LIST_PAGE_SIZE)."""
        self._cache = cache

    def page(self, service: CompiledService, method: str, scopes: frozenset[str],
             cursor: Any = None) -> Page:
        """The page a cursor asks for (the first without one).

        Raises:
            ProtocolError: -32602 for a cursor that does not continue this caller's list.
        """
        listing = self._listing(service, method, scopes)
        offset = 0 if cursor is None else _start(cursor, method, listing)
        end = offset + self.page_size
        following = (encode_cursor(Position(method, end, listing.fingerprint))
                     if end < len(listing.entries) else None)
        return Page(list(listing.entries[offset:end]), offset, following)

    def _listing(self, service: CompiledService, method: str,
                 scopes: frozenset[str]) -> Listing:
        key = (service, method, scopes)
        try:
            return self._cache[key]
        except KeyError:  # the first request of this caller's kind since the tree was loaded
            entries = tuple(LIST_METHODS[method].entries(service, scopes))
            listing = self._cache[key] = Listing(entries, fingerprint(method, entries))
            return listing


def _start(cursor: Any, method: str, listing: Listing) -> int:
    """Raises:
        ProtocolError: -32602, saying why the cursor does not continue `listing`.
    """
    position = decode_cursor(cursor)
    if position is None:
        raise _refused("malformed", "Invalid cursor: it is not one this server gave")
    if position.method != method:
        raise _refused("other_list", f"Invalid cursor: it continues {position.method}, "
                                     f"not {method}")
    if position.fingerprint != listing.fingerprint:
        raise _refused("list_changed", "Invalid cursor: the list changed since it was given "
                                       "(the catalog was reloaded, or the caller's scopes differ)")
    if position.offset >= len(listing.entries):
        raise _refused("out_of_range", "Invalid cursor: it points past the end of the list")
    return position.offset


def _refused(reason: Refusal, why: str) -> ProtocolError:
    return ProtocolError(INVALID_PARAMS, f"{why}; list again without a cursor",
                         {"reason": reason})
