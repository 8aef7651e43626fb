"""The sandbox's in-memory data: fixtures loaded per app instance, tokens, OAuth grants, ids.

Reads JSON files once at app build time; everything after that is plain mutable state
owned by one app, so writes are visible to later reads and never leak between apps.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.dates import rebase, rebase_days
from sandbox.ratelimit import RateLimiter

Row = dict[str, Any]
Clock = Callable[[], datetime]


@dataclass
class RetentlyAccount:
    """One Retently account: every collection the REST API and its extensions serve."""

    id: str
    name: str
    features: list[str]
    customers: list[Row]
    companies: list[Row]
    campaigns: list[Row]
    templates: list[Row]
    feedback: list[Row]
    outbox: list[Row]
    suppressed_emails: list[Row]
    suppressed_domains: list[Row]
    trends: list[Row]
    digests: list[Row]
    integrations: list[Row]
    users: list[Row]
    statuses: list[Row]
    saved_filters: list[Row]
    recent_filters: dict[str, list[Row]]
    usage: Row
    replies: dict[str, list[Row]]
    queue: Row
    unsubscribed: set[str] = field(default_factory=set)

    @property
    def b2b(self) -> bool:
        return "b2b" in self.features


@dataclass
class RefinerProject:
    """One Refiner project (environment) and everything its API key can reach."""

    uuid: str
    name: str
    forms: list[Row]
    form_history: list[Row]
    responses: list[Row]
    response_tags: dict[str, list[str]]
    contacts: list[Row]
    segments: list[Row]
    tags: list[Row]
    traits: list[Row]
    events: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class RetentlyToken:
    token: str
    description: str
    account_id: str
    sub: str
    user: str
    scope: str
    permission: str
    exp: int
    client_id: str
    revoked: bool
    aud: tuple[str, ...]

    def active(self, now: datetime) -> bool:
        return not self.revoked and self.exp > now.timestamp()


@dataclass(frozen=True)
class RefinerToken:
    token: str
    description: str
    kind: str
    """`api_key` (one project, the public API's key) or `oauth` (several projects, scoped)."""
    projects: tuple[str, ...]
    scope: str
    sub: str
    client_id: str
    exp: int
    aud: tuple[str, ...]

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split())

    def active(self, now: datetime) -> bool:
        return self.exp > now.timestamp()


class IdFactory:
    """Mints fresh ids for writes: deterministic for a given clock, unique within an app."""

    def __init__(self, now: Clock) -> None:
        self._now = now
        self._counter: Iterator[int] = itertools.count(1)

    def object_id(self) -> str:
        """A 24-hex Mongo-style id whose first 8 hex digits are the creation time."""
        stamp = int(self._now().timestamp()) & 0xFFFFFFFF
        return f"{stamp:08x}5a0d{next(self._counter):012x}"

    def uuid(self) -> str:
        stamp = int(self._now().timestamp()) & 0xFFFFFFFF
        serial = next(self._counter)
        return f"{stamp:08x}-{serial & 0xFFFF:04x}-11f0-9c55-{serial:012x}"


@dataclass
class OAuthGrant:
    """What an authorization code or refresh token stands for."""

    client_id: str
    template: str
    """The demo token whose identity, account or projects, and scope ceiling are inherited."""
    scope: str
    resource: str | None
    redirect_uri: str = ""
    challenge: str = ""
    expires: float = 0.0


@dataclass
class OAuthState:
    """The sandbox authorization server's registrations and outstanding grants."""

    clients: dict[str, Row] = field(default_factory=dict)
    codes: dict[str, OAuthGrant] = field(default_factory=dict)
    refresh_tokens: dict[str, OAuthGrant] = field(default_factory=dict)


@dataclass
class Sandbox:
    """All state of one sandbox app."""

    retently: dict[str, RetentlyAccount]
    refiner_account: Row
    refiner: dict[str, RefinerProject]
    retently_tokens: dict[str, RetentlyToken]
    refiner_tokens: dict[str, RefinerToken]
    now: Clock
    ids: IdFactory
    limiter: RateLimiter | None
    public_url: str | None
    oauth: OAuthState = field(default_factory=OAuthState)


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_tokens(fixtures_dir: Path) -> tuple[dict[str, RetentlyToken], dict[str, RefinerToken]]:
    """Parse `tokens.json`.

    Raises:
        FileNotFoundError, KeyError: the file is missing or lacks a field.
    """
    raw = _read(fixtures_dir / "tokens.json")
    retently = {
        token: RetentlyToken(
            token=token,
            description=entry["description"],
            account_id=entry["account_id"],
            sub=entry["sub"],
            user=entry["user"],
            scope=entry["scope"],
            permission=entry["permission"],
            exp=entry["exp"],
            client_id=entry["client_id"],
            revoked=entry.get("revoked", False),
            aud=tuple(entry.get("aud", ())),
        )
        for token, entry in raw["retently"].items()
    }
    refiner = {
        token: RefinerToken(
            token=token,
            description=entry["description"],
            kind=entry["kind"],
            projects=tuple(entry["projects"]),
            scope=entry.get("scope", ""),
            sub=entry.get("sub", ""),
            client_id=entry.get("client_id", ""),
            exp=entry["exp"],
            aud=tuple(entry.get("aud", ())),
        )
        for token, entry in raw["refiner"].items()
    }
    return retently, refiner


def demo_tokens(fixtures_dir: Path) -> dict[str, str]:
    """Token string -> short description, for the CLI and the demo; empty without fixtures."""
    try:
        retently, refiner = load_tokens(fixtures_dir)
    except FileNotFoundError:
        return {}
    described = {token: entry.description for token, entry in retently.items()}
    described.update({token: entry.description for token, entry in refiner.items()})
    return described


def _load_retently(folder: Path, days: int) -> dict[str, RetentlyAccount]:
    tables = {path.stem: rebase(_read(path), days) for path in sorted(folder.glob("*.json"))}
    accounts: dict[str, RetentlyAccount] = {}
    for account_id, meta in tables["accounts"].items():

        def part(name: str, account: str = account_id) -> Any:
            return tables[name][account]

        accounts[account_id] = RetentlyAccount(
            id=account_id,
            name=meta["name"],
            features=list(meta["features"]),
            customers=part("customers"),
            companies=part("companies"),
            campaigns=part("campaigns"),
            templates=part("templates"),
            feedback=part("feedback"),
            outbox=part("outbox"),
            suppressed_emails=part("suppressions")["emails"],
            suppressed_domains=part("suppressions")["domains"],
            trends=part("trends"),
            digests=part("digests"),
            integrations=part("integrations"),
            users=part("users"),
            statuses=part("statuses"),
            saved_filters=part("filters")["saved"],
            recent_filters=part("filters")["recent"],
            usage=part("usage"),
            replies=part("replies"),
            queue=part("queue"),
        )
    return accounts


def _load_refiner(folder: Path, days: int) -> tuple[Row, dict[str, RefinerProject]]:
    tables = {path.stem: rebase(_read(path), days) for path in sorted(folder.glob("*.json"))}
    projects = {
        meta["uuid"]: RefinerProject(
            uuid=meta["uuid"],
            name=meta["name"],
            forms=tables["forms"][meta["uuid"]],
            form_history=tables["form_history"][meta["uuid"]],
            responses=tables["responses"][meta["uuid"]],
            response_tags=tables["response_tags"][meta["uuid"]],
            contacts=tables["contacts"][meta["uuid"]],
            segments=tables["segments"][meta["uuid"]],
            tags=tables["tags"][meta["uuid"]],
            traits=tables["traits"][meta["uuid"]],
        )
        for meta in tables["projects"]
    }
    return tables["account"], projects


def load_sandbox(
    fixtures_dir: Path,
    *,
    rebase_dates: bool,
    now: Clock,
    limiter: RateLimiter | None,
    public_url: str | None,
) -> Sandbox:
    """Read every fixture file into a fresh, private `Sandbox`.

    Raises:
        FileNotFoundError, KeyError: the fixtures are incomplete.
    """
    days = rebase_days(now()) if rebase_dates else 0
    retently_tokens, refiner_tokens = load_tokens(fixtures_dir)
    refiner_account, refiner = _load_refiner(fixtures_dir / "refiner", days)
    return Sandbox(
        retently=_load_retently(fixtures_dir / "retently", days),
        refiner_account=refiner_account,
        refiner=refiner,
        retently_tokens=retently_tokens,
        refiner_tokens=refiner_tokens,
        now=now,
        ids=IdFactory(now),
        limiter=limiter,
        public_url=public_url,
    )
