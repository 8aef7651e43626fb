"""PII de-identification by scope: stable pseudonyms for identities, nothing else lost. Pure.

A pseudonym is a keyed hash of the value within the caller's account, so the same person gets
the same pseudonym in every result of that account (a model can still count and group), and a
different one in another account. Fields named by the policy are pseudonymised (or dropped);
email addresses inside any other text are pseudonymised too: internationalised ones whole, and
percent-encoded ones (`%40`, or `%2540` and deeper in a URL inside a URL) in their own encoding,
with the pseudonym of the decoded address.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import unquote

from gateway import native
from gateway.spec.compiled import RedactionRules

# An address is taken whole, Unicode included (RFC 6531 local parts, IDNA domains): outside ASCII
# every character counts but spaces, punctuation and symbols (Latin-1, general and CJK
# punctuation, currency, arrows to dingbats, fullwidth forms, emoji), which never hold a letter or
# a mark here: Python's \w would miss marks such as Devanagari vowel signs. One negated class per
# part keeps each repeat a single C loop, and the match may only start where the text before it
# could not continue the local part, so a long run of letters costs one pass, not one a position.
_NOT_TEXT: Final = (
    r"\s\x80-\xa9\xab-\xb4\xb6-\xb9\xbb-\xbf\xd7\xf7\u060c\u061b\u061f\u066a-\u066d\u06d4"
    r"\u0964\u0965\u2000-\u200b\u200e-\u206f\u20a0-\u20cf\u2190-\u2bff"
    r"\u3000-\u3004\u3008-\u3020\u3030\u3036\u3037\u303d-\u303f"
    r"\ufe10-\ufe1f\ufe30-\ufe6f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
    r"\ufff0-\uffff\U0001f000-\U0001faff")
_LOCAL_CHAR: Final = rf"[^\x00-\x24&(-*,/:-@\[-^`{{-\x7f{_NOT_TEXT}]"  # letters digits ._%+'-
_LABEL_CHAR: Final = rf"[^\x00-\x2c./:-@\[-^`{{-\x7f{_NOT_TEXT}]"     # letters digits _-
_LETTER: Final = rf"[^\x00-\x40\[-`{{-\x7f\d{_NOT_TEXT}]"             # letters and marks
# In URLs the at-sign is percent-encoded, once (%40) or again inside an encoded URL (%2540, ...):
# any depth counts, and so do the percent-encoded UTF-8 bytes of a Unicode domain.
_ESCAPE: Final = "%(?:25)*"
_WIDE_BYTE: Final = f"{_ESCAPE}[89A-Fa-f][0-9A-Fa-f]"
_LOCAL: Final = rf"(?<!{_LOCAL_CHAR})(?P<local>{_LOCAL_CHAR}+)"
_PUNYCODE: Final = "[Xx][Nn]--[A-Za-z0-9-]+"
EMAIL: Final = re.compile(
    rf"{_LOCAL}(?P<at>@|{_ESCAPE}40)(?P<domain>(?:(?:{_LABEL_CHAR}|{_WIDE_BYTE})+\.)+"
    rf"(?:{_PUNYCODE}|(?:{_LETTER}|{_WIDE_BYTE}){{2,}}))")
# The same without escapes, for text with no percent sign (most text): matches the same there,
# in a third less time, since each part of the domain is again a single class.
_PLAIN_EMAIL: Final = re.compile(
    rf"{_LOCAL}(?P<at>@)(?P<domain>(?:{_LABEL_CHAR}+\.)+(?:{_PUNYCODE}|{_LETTER}{{2,}}))")
# What a local part may carry before the address proper: anything up to an escaped character no
# address has (`email%3Djane%40...` is `email=` then jane's address), and leading dots.
_BEFORE_LOCAL: Final = re.compile(
    rf"(?:.*{_ESCAPE}(?!2[5BbDdEe]|5[Ff]|27|[89A-Fa-f][0-9A-Fa-f])[0-9A-Fa-f]{{2}})?\.*")
PSEUDONYM_DOMAIN: Final = "pseudonym.invalid"


def pseudonym_of(key: bytes, account: str, value: str) -> str:
    """The pseudonym of one identity within one account: an email stays email-shaped."""
    text = value.strip()
    address = (EMAIL.fullmatch(text) if "%" in text
               else _PLAIN_EMAIL.fullmatch(text) if "@" in text else None)
    identity = _fold(text) if address is None else _address_identity(address)
    message = account.encode() + b"\x00" + identity.encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()[:12]
    if address is None:
        return f"anon-{digest}"
    return f"person-{digest}@{PSEUDONYM_DOMAIN}"


def _address_identity(address: re.Match[str]) -> str:
    """One spelling per address: percent-decoded as often as its at-sign was encoded (and once
    when it was not, for an encoded local part in a URL path), then folded."""
    local, at, domain = address.group("local", "at", "domain")
    text = f"{local}@{domain}"
    for _ in range(max(1, len(at) // 2)):  # "@" and "%40": once; "%2540": twice
        if "%" not in text:
            break
        try:
            text = unquote(text, errors="strict")
        except UnicodeDecodeError:  # not UTF-8 underneath: the escapes are the spelling
            break
    return _fold(text)


def _fold(text: str) -> str:
    """One spelling per value whatever its case or Unicode form: canonical caseless matching
    (casefold between NFD and NFC, so `Straße` is `STRASSE` and a decomposed `ü` is `ü`). ASCII
    is only lower-cased, the same thing, so its pseudonyms are those given before folding."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


PseudonymFunction = Callable[[bytes, str, str], str]


class Pseudonyms:
    """`pseudonym_of` remembered: a dict per key and account, so that a recurring person (the
    same people recur in every page) costs one dict lookup, which the compiled loops make
    without a call. Bounded: once `size` pseudonyms (or tables) are held, all are forgotten."""

    __slots__ = ("_held", "_size", "_tables")

    def __init__(self, size: int) -> None:
        self._size = size
        self._held = 0
        self._tables: dict[tuple[bytes, str], _Table] = {}

    def __call__(self, key: bytes, account: str, value: str) -> str:
        return self.table(key, account)[value]

    def table(self, key: bytes, account: str) -> dict[str, str]:
        """The account's pseudonyms: reading a value not yet in it makes its pseudonym."""
        table = self._tables.get((key, account))
        if table is None:
            if len(self._tables) >= self._size:
                self._forget()
                self._tables.clear()
            table = self._tables[(key, account)] = _Table(self, key, account)
        return table

    def _making(self) -> None:
        """One more is about to be held."""
        if self._held >= self._size:
            self._forget()
        self._held += 1

    def _forget(self) -> None:
        for table in self._tables.values():
            table.clear()
        self._held = 0


class _Table(dict[str, str]):
    __slots__ = ("_account", "_key", "_owner")

    def __init__(self, owner: Pseudonyms, key: bytes, account: str) -> None:
        super().__init__()
        self._owner, self._key, self._account = owner, key, account

    def __missing__(self, value: str) -> str:
        made = pseudonym_of(self._key, self._account, value)
        self._owner._making()
        self[value] = made
        return made


def memoised(size: int) -> Pseudonyms:
    """`pseudonym_of`, remembered (see Pseudonyms)."""
    return Pseudonyms(size)


class Pseudonymiser:
    """Keyed, account-scoped pseudonyms; `of` may be a memoised `pseudonym_of`."""

    __slots__ = ("_account", "_key", "_of")

    def __init__(self, key: bytes, account: str | None,
                 of: PseudonymFunction | Pseudonyms = pseudonym_of) -> None:
        self._key = key
        self._account = account or ""
        self._of = of

    def __call__(self, value: str) -> str:
        return self._of(self._key, self._account, value)

    def bound(self) -> Callable[[str], str]:
        """The same function with no Python frame of its own (the hot loop calls it per name)."""
        if isinstance(self._of, Pseudonyms):
            return self._of.table(self._key, self._account).__getitem__
        return functools.partial(self._of, self._key, self._account)

    def table(self) -> dict[str, str] | None:
        """The remembered pseudonyms, which the one-pass page reads itself (else None)."""
        if isinstance(self._of, Pseudonyms):
            return self._of.table(self._key, self._account)
        return None

    def scrub(self, text: str) -> str:
        """Every address in the text replaced by its pseudonym, an encoded one in its encoding."""
        if "%" in text:
            return EMAIL.sub(self._replace, text)
        if "@" in text:
            return _PLAIN_EMAIL.sub(self._replace, text)
        return text

    def _replace(self, found: re.Match[str]) -> str:
        local, at, domain = found.group("local", "at", "domain")
        if at == "@" and "%" not in local and local[0] != ".":  # most addresses
            return self._of(self._key, self._account, found.group(0))
        own = _BEFORE_LOCAL.sub("", local, count=1)  # the pattern always matches at the start
        if not own:
            return found.group(0)  # no local part left: a domain alone names nobody
        return local[:len(local) - len(own)] + self(own + at + domain).replace("@", at)


def redact(value: Any, rules: RedactionRules, pseudonym: Pseudonymiser) -> Any:
    """A de-identified copy of a JSON-like value (empty containers are shared, not copied).

    Policy keys match result keys in any case (`EMAIL`, `Email` and `email` alike). An address
    in a key is replaced like one in a value (with `scrub_text`, or always under a pseudonymised
    key); values whose keys become the same pseudonym (the same address, spelt differently) are
    merged where the first stood: see `_merge`."""
    scrub = pseudonym.scrub if rules.scrub_text else _same
    keys = _KeyPolicy(rules, scrub)
    plain, special, dropped, renamed = keys.plain, keys.special, keys.dropped, keys.renamed
    learn = keys.learn
    pseudonym_of = pseudonym.bound()
    compiled = native.rows()
    if compiled is not None:  # the same walk in C (gateway/native/_rows.c), policy calls back
        return compiled.walk(value, plain, special, dropped, renamed, learn, pseudonym_of,
                             functools.partial(_pseudonymise, pseudonym=pseudonym),
                             scrub if rules.scrub_text else None, _merged)

    # The hot loop of every de-identified result (each row of a page): a C-level copy of each
    # object, then only the entries that change are written; exact type checks first, one set
    # lookup for a key the policy does not name, no call for a scalar.
    def walk(value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            out: dict[str, Any] = value.copy()
            for key, item in value.items():
                kind = type(item)
                if key not in plain and (key in special or learn(key)):
                    if key in dropped:
                        del out[key]
                    elif kind is str and item:
                        out[key] = pseudonym_of(item)
                    else:
                        out[key] = _pseudonymise(item, pseudonym)
                elif kind is str:
                    if "@" in item or "%" in item:
                        out[key] = scrub(item)
                elif kind not in _SCALARS and item:
                    out[key] = walk(item)
            if renamed and not renamed.keys().isdisjoint(out):
                return _merged((renamed.get(key, key), item) for key, item in out.items())
            return out
        if kind is list:
            return [walk(item) if type(item) not in _SCALARS else item for item in value]
        if isinstance(value, str):
            return scrub(value) if "@" in value or "%" in value else value
        if isinstance(value, dict):
            return walk(dict(value))
        if isinstance(value, list | tuple):
            return walk(list(value))
        return value

    return walk(value)


PLAIN: Final = 0
PSEUDONYMISED: Final = 1
DROPPED: Final = 2
"""A key's verdict, as the one-pass page reads it (gateway/native/_pages.c)."""

def key_verdict(rules: RedactionRules, key: Any) -> int:
    """The policy's verdict on a key, in any case (a key that holds an address is renamed as
    well when plain: `_KeyPolicy`)."""
    folded = key.casefold() if type(key) is str else key
    if folded in rules.folded_drop:
        return DROPPED
    return PSEUDONYMISED if folded in rules.folded_pseudonymise else PLAIN


RowPolicy = tuple[Callable[[str], int] | None, Callable[[str], str] | dict[str, str],
                  Callable[[str], str] | None]
"""(verdict of a key or None: all plain; pseudonym of a text, or the remembered pseudonyms, a
dict that makes a missing one when read; scrub of a text or None)."""


class Redaction:
    """One call's de-identification: called on a value, it is `redact`; `row_policy` gives the
    same policy to the one-pass page (gateway/calls/pages.py). Without rules: none at all."""

    __slots__ = ("_pseudonym", "_rules")

    def __init__(self, rules: RedactionRules | None = None,
                 pseudonym: Pseudonymiser | None = None) -> None:
        self._rules = rules
        self._pseudonym = pseudonym

    def __call__(self, value: Any) -> Any:
        if self._rules is None or self._pseudonym is None:
            return value
        return redact(value, self._rules, self._pseudonym)

    @property
    def rules(self) -> RedactionRules | None:
        """The rules applied, or None when nothing is de-identified."""
        return None if self._pseudonym is None else self._rules

    def row_policy(self) -> RowPolicy:
        """The policy's calls for one result, each key's verdict learnt as `redact` learns it."""
        rules, pseudonym = self._rules, self._pseudonym
        if rules is None or pseudonym is None:
            return None, _same, None
        scrub = pseudonym.scrub if rules.scrub_text else None
        keys = _KeyPolicy(rules, scrub or _same)
        plain, special, dropped, learn = keys.plain, keys.special, keys.dropped, keys.learn

        def verdict(key: str) -> int:
            if key not in plain and (key in special or learn(key)):
                return DROPPED if key in dropped else PSEUDONYMISED
            return PLAIN

        table = pseudonym.table()
        return verdict, pseudonym.bound() if table is None else table, scrub


class _KeyPolicy:
    """The policy's verdict on each key, learnt as one call meets the keys: a result repeats its
    keys row after row, so each distinct key is casefolded once a call, and costs set lookups,
    as an exact-case match would, after that."""

    __slots__ = ("_rules", "_scrub", "dropped", "plain", "renamed", "special")

    def __init__(self, rules: RedactionRules, scrub: Callable[[str], str]) -> None:
        self._rules = rules
        self._scrub = scrub
        self.plain: set[Any] = set()
        """Keys met that the policy does not name: their values are walked."""
        self.renamed: dict[Any, str] = {}
        """Plain keys that hold an address, with the address replaced."""
        self.special: set[Any] = set()
        """Keys met that it names, to pseudonymise or to drop."""
        self.dropped: set[Any] = set()
        """Keys met that it names to drop."""

    def learn(self, key: Any) -> bool:
        """Whether the policy names this key, remembered for the rest of the call."""
        verdict = key_verdict(self._rules, key)
        if verdict == DROPPED:
            self.dropped.add(key)
        elif verdict == PLAIN:
            self.plain.add(key)
            if type(key) is str and ("@" in key or "%" in key):
                scrubbed = self._scrub(key)
                if scrubbed != key:
                    self.renamed[key] = scrubbed
            return False
        self.special.add(key)
        return True


def _same(text: str) -> str:
    return text


_SCALARS: Final = frozenset({int, float, bool, type(None)})
_NUMBERS: Final = frozenset({int, float})


def _pseudonymise(value: Any, pseudonym: Pseudonymiser) -> Any:
    if isinstance(value, str):
        return pseudonym(value) if value else value
    if isinstance(value, list):
        return [_pseudonymise(item, pseudonym) for item in value]
    if isinstance(value, dict):
        return _merged((pseudonym.scrub(k) if isinstance(k, str) else k,
                        _pseudonymise(v, pseudonym)) for k, v in value.items())
    return value


def _merged(items: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    """An object from its entries, the values of a repeated key merged where it first stood."""
    out: dict[Any, Any] = {}
    for key, item in items:
        out[key] = _merge(out[key], item) if key in out else item
    return out


def _merge(first: Any, second: Any) -> Any:
    """Two values found under one person's address, spelt two ways, as one value: numbers add
    (an object keyed by address is most often a tally), lists join, objects merge key by key;
    otherwise (text, flags, nulls, mixed kinds) the first value stays."""
    kinds = (type(first), type(second))
    if kinds[0] in _NUMBERS and kinds[1] in _NUMBERS:
        return first + second
    if kinds == (list, list):
        return [*first, *second]
    if kinds == (dict, dict):
        return _merged([*first.items(), *second.items()])
    return first
