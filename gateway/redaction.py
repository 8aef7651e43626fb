"""PII de-identification by scope: stable pseudonyms for identities, nothing else lost. Pure.

A pseudonym is a keyed hash of the value within the caller's account, so the same person gets
the same pseudonym in every result of that account (a model can still count and group), and a
different one in another account. Fields named by the policy are pseudonymised (or dropped);
email addresses inside any other text are pseudonymised too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

EMAIL: Final = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PSEUDONYM_DOMAIN: Final = "pseudonym.invalid"


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """What to de-identify in a result: compiled once per tool from the service and tool policy."""

    pseudonymise: frozenset[str]
    """Keys whose values (strings, or lists of strings) become pseudonyms."""
    drop: frozenset[str]
    """Keys removed altogether (job titles, locations, free-form attribute values)."""
    scrub_text: bool = True
    """Pseudonymise email addresses found inside any other string."""

    @property
    def empty(self) -> bool:
        return not self.pseudonymise and not self.drop and not self.scrub_text


class Pseudonymiser:
    """Keyed, account-scoped pseudonyms.

    `memo` may carry pseudonyms already computed for this key (bounded, shared between calls):
    the same people recur in every page, and the HMAC is the cost of redaction.
    """

    def __init__(self, key: bytes, account: str | None,
                 memo: MutableMapping[tuple[str, str], str] | None = None) -> None:
        self._key = key
        self._account_name = account or ""
        self._account = self._account_name.encode()
        self._memo: MutableMapping[tuple[str, str], str] = {} if memo is None else memo

    def _digest(self, value: str) -> str:
        message = self._account + b"\x00" + value.strip().lower().encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:12]

    def __call__(self, value: str) -> str:
        memo_key = (self._account_name, value)
        known = self._memo.get(memo_key)
        if known is not None:
            return known
        digest = self._digest(value)
        if "@" in value and EMAIL.fullmatch(value.strip()):
            pseudonym = f"person-{digest}@{PSEUDONYM_DOMAIN}"
        else:
            pseudonym = f"anon-{digest}"
        self._memo[memo_key] = pseudonym
        return pseudonym

    def scrub(self, text: str) -> str:
        if "@" not in text:
            return text
        return EMAIL.sub(lambda m: self(m.group(0)), text)


def redact(value: Any, rules: RedactionRules, pseudonym: Pseudonymiser) -> Any:
    """A de-identified copy of a JSON-like value."""
    return _walk(value, rules.drop, rules.pseudonymise,
                 pseudonym.scrub if rules.scrub_text else _same, pseudonym)


def _same(text: str) -> str:
    return text


def _walk(value: Any, drop: frozenset[str], pseudonymise: frozenset[str],
          scrub: Callable[[str], str], pseudonym: Pseudonymiser) -> Any:
    # The hot loop of every de-identified result: plain type checks and local names only.
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in drop:
                continue
            if key in pseudonymise:
                out[key] = _pseudonymise(item, pseudonym)
            elif isinstance(item, str):
                out[key] = scrub(item) if "@" in item else item
            elif isinstance(item, _CONTAINERS):
                out[key] = _walk(item, drop, pseudonymise, scrub, pseudonym)
            else:
                out[key] = item
        return out
    if isinstance(value, list):
        return [_walk(item, drop, pseudonymise, scrub, pseudonym) for item in value]
    if isinstance(value, str):
        return scrub(value) if "@" in value else value
    return value


_CONTAINERS: Final = (dict, list)


def _pseudonymise(value: Any, pseudonym: Pseudonymiser) -> Any:
    if isinstance(value, str):
        return pseudonym(value) if value else value
    if isinstance(value, list):
        return [_pseudonymise(item, pseudonym) for item in value]
    if isinstance(value, dict):
        return {k: _pseudonymise(v, pseudonym) for k, v in value.items()}
    return value
