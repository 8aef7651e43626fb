"""PII de-identification by scope: stable pseudonyms for identities, nothing else lost. Pure.

A pseudonym is a keyed hash of the value within the caller's account, so the same person gets
the same pseudonym in every result of that account (a model can still count and group), and a
different one in another account. Fields named by the policy are pseudonymised (or dropped);
email addresses inside any other text are pseudonymised too.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any, Final

from gateway.spec.compiled import RedactionRules

# An address is taken whole, Unicode included (RFC 6531 local parts, IDNA domains): outside ASCII
# every character but spaces and punctuation counts (Python's \w lacks combining marks, such as
# Devanagari vowel signs). One negated class per part keeps each repeat a single C loop, and the
# match may only start where the text before it could not continue the local part, so a long run
# of letters costs one pass, not one pass per position.
_NOT_TEXT: Final = (r"\s\x80-\xa9\xab-\xb4\xb6-\xb9\xbb-\xbf\xd7\xf7\u060c\u061b\u061f\u06d4"
                    r"\u0964\u0965\u2000-\u200b\u200e-\u2bff\u3000-\u303f\ufe10-\ufe1f\ufe30-\ufe6f"
                    r"\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\ufff0-\uffff"
                    r"\U0001f000-\U0001faff")
_LOCAL_CHAR: Final = rf"[^\x00-\x24&(-*,/:-@\[-^`{{-\x7f{_NOT_TEXT}]"  # letters digits ._%+'-
_LABEL_CHAR: Final = rf"[^\x00-\x2c./:-@\[-^`{{-\x7f{_NOT_TEXT}]"     # letters digits _-
_LETTER: Final = rf"[^\x00-\x40\[-`{{-\x7f\d{_NOT_TEXT}]"             # letters and marks
EMAIL: Final = re.compile(
    rf"(?<!{_LOCAL_CHAR})(?P<local>{_LOCAL_CHAR}+)(?P<at>@)"
    rf"(?P<domain>(?:{_LABEL_CHAR}+\.)+(?:xn--[A-Za-z0-9-]+|{_LETTER}{{2,}}))")
PSEUDONYM_DOMAIN: Final = "pseudonym.invalid"


def pseudonym_of(key: bytes, account: str, value: str) -> str:
    """The pseudonym of one identity within one account: an email stays email-shaped."""
    message = account.encode() + b"\x00" + value.strip().lower().encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()[:12]
    if "@" in value and EMAIL.fullmatch(value.strip()):
        return f"person-{digest}@{PSEUDONYM_DOMAIN}"
    return f"anon-{digest}"


PseudonymFunction = Callable[[bytes, str, str], str]


def memoised(size: int) -> PseudonymFunction:
    """`pseudonym_of` behind a bounded LRU (C-implemented: the lookup is most of the cost of a
    recurring person, and the same people recur in every page)."""
    return functools.lru_cache(maxsize=size)(pseudonym_of)


class Pseudonymiser:
    """Keyed, account-scoped pseudonyms; `of` may be a memoised `pseudonym_of`."""

    __slots__ = ("_account", "_key", "_of")

    def __init__(self, key: bytes, account: str | None, of: PseudonymFunction = pseudonym_of
                 ) -> None:
        self._key = key
        self._account = account or ""
        self._of = of

    def __call__(self, value: str) -> str:
        return self._of(self._key, self._account, value)

    def bound(self) -> Callable[[str], str]:
        """The same function with no Python frame of its own (the hot loop calls it per name)."""
        return functools.partial(self._of, self._key, self._account)

    def scrub(self, text: str) -> str:
        if "@" not in text:
            return text
        return EMAIL.sub(lambda m: self(m.group(0)), text)


def redact(value: Any, rules: RedactionRules, pseudonym: Pseudonymiser) -> Any:
    """A de-identified copy of a JSON-like value (empty containers are shared, not copied)."""
    drop = rules.drop
    special = rules.special
    scrub = pseudonym.scrub if rules.scrub_text else _same
    pseudonym_of = pseudonym.bound()

    # The hot loop of every de-identified result (each row of a page): a C-level copy of each
    # object, then only the entries that change are written; exact type checks first, one set
    # lookup per key, no call for a scalar.
    def walk(value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            out: dict[str, Any] = value.copy()
            for key, item in value.items():
                kind = type(item)
                if key in special:
                    if key in drop:
                        del out[key]
                    elif kind is str and item:
                        out[key] = pseudonym_of(item)
                    else:
                        out[key] = _pseudonymise(item, pseudonym)
                elif kind is str:
                    if "@" in item:
                        out[key] = scrub(item)
                elif kind not in _SCALARS and item:
                    out[key] = walk(item)
            return out
        if kind is list:
            return [walk(item) if type(item) not in _SCALARS else item for item in value]
        if isinstance(value, str):
            return scrub(value) if "@" in value else value
        if isinstance(value, dict):
            return walk(dict(value))
        if isinstance(value, list | tuple):
            return walk(list(value))
        return value

    return walk(value)


def _same(text: str) -> str:
    return text


_SCALARS: Final = frozenset({int, float, bool, type(None)})


def _pseudonymise(value: Any, pseudonym: Pseudonymiser) -> Any:
    if isinstance(value, str):
        return pseudonym(value) if value else value
    if isinstance(value, list):
        return [_pseudonymise(item, pseudonym) for item in value]
    if isinstance(value, dict):
        return {k: _pseudonymise(v, pseudonym) for k, v in value.items()}
    return value
