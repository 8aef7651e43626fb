"""The compiled form of a spec tree: the immutable values the request path reads. Pure.

The compiler (compiler.py) builds these once at load time; nothing here changes afterwards, so a
reload builds a new Registry and swaps it whole. A tool's answer comes from exactly one `Source`:
one upstream request, paged reads the gateway filters and aggregates, or a template result.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.spec.jmes import Expression
from gateway.spec.models import Budget, QueryStyle, ServiceSpec
from gateway.spec.pages import PageDecoder
from gateway.spec.reads import PrunedDecoder
from gateway.spec.templates import Ref, Template
from gateway.spec.tools import PromptSpec, ResourceSpec, ToolSpec


@dataclass(frozen=True, slots=True)
class PathPart:
    """A literal path piece or an argument whose value is percent-encoded into one segment."""

    literal: str | None = None
    ref: Ref | None = None

    @property
    def argument(self) -> str | None:
        return self.ref.name if self.ref is not None else None


@dataclass(frozen=True)
class CompiledRequest:
    """One upstream request, ready to render per call."""

    method: str
    path: tuple[PathPart, ...]
    query: dict[str, Any]
    headers: dict[str, Template]
    body: Any
    query_style: QueryStyle
    retryable: bool = False
    """GET, HEAD, or a read declared `idempotent`: safe to send again after a failure that
    proves nothing was done (a refused connection, 429, 502, 503, 504)."""


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """Keep a collected item when `field` compares to `value` with `op`."""

    field: Expression
    op: str
    value: Any
    """A compiled template; a condition whose value renders absent is skipped."""


@dataclass(frozen=True, slots=True)
class CompiledGiven:
    """Conditions the caller gives as data, over the fields the spec names."""

    given: Any
    """A compiled template giving the list of {field, op, value}."""
    fields: Mapping[str, Expression]
    families: Mapping[str, Expression] = field(default_factory=dict)
    """Prefix (`attributes.`) -> an expression giving an object keyed by the rest of a name."""
    when: Any = None
    """A compiled template: the entry is on only while it renders a true value."""

    def resolve(self, name: Any) -> tuple[Expression, str | None] | None:
        """Where a caller's field name reads an item: (expression, key in the object it gives,
        for a family), or None for a name the spec does not offer."""
        if not isinstance(name, str):
            return None
        if name in self.fields:
            return self.fields[name], None
        for prefix, expression in self.families.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return expression, name[len(prefix):]
        return None

    @property
    def names(self) -> list[str]:
        return [*self.fields, *(f"{prefix}<name>" for prefix in self.families)]


@dataclass(frozen=True, slots=True)
class CompiledAggregate:
    by: Any
    """A compiled template naming one of `groups` (or a literal group name)."""
    groups: Mapping[str, Expression]
    metrics: Mapping[str, tuple[str, Expression | None]]
    """name -> (function, field): count, avg, sum, min, max, nps, distinct, count_if, first."""
    sort: str | None = None
    compare_field: Expression | None = None
    compare_days: Any = None


@dataclass(frozen=True)
class RequestSource:
    """One upstream request answers the call (every write tool has this source)."""

    request: CompiledRequest


@dataclass(frozen=True)
class CollectSource:
    """Items read from bounded paged requests, then filtered and maybe aggregated."""

    request: CompiledRequest
    items: Expression
    page_param: str | None
    page_start: int
    stop_when: Expression | None
    max_pages: int
    max_items: int
    limit: Any = None
    conditions: tuple[CompiledCondition | CompiledGiven, ...] = ()
    match: Any = None
    """A compiled template giving `all` (None: the default) or `any`."""
    aggregate: CompiledAggregate | None = None
    page_total: Expression | None = None
    """Over the first page's body: how many pages there are (for progress reports)."""


@dataclass(frozen=True)
class ResultSource:
    """The gateway answers itself from a template (no upstream call)."""

    template: Any


Source = RequestSource | CollectSource | ResultSource
"""Where a tool's answer comes from: exactly one of the three."""


@dataclass(frozen=True)
class CompiledCheck:
    """A rule over the arguments and the principal, checked before anything is sent."""

    value: Any
    op: str
    than: Any
    message: Any


@dataclass(frozen=True)
class CompiledLookup:
    """A read that fills a value the call did not give."""

    name: str
    request: CompiledRequest
    select: Expression
    needs: frozenset[str]
    """Arguments the request refers to; all must be present for the lookup to run."""


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """What to de-identify in a result: compiled once per tool from the service and tool policy."""

    pseudonymise: frozenset[str]
    """Keys whose values (strings, or lists of strings) become pseudonyms."""
    drop: frozenset[str]
    """Keys removed altogether (job titles, locations, free-form attribute values)."""
    scrub_text: bool = True
    """Pseudonymise email addresses found inside any other string."""
    folded_pseudonymise: frozenset[str] = field(init=False)
    """`pseudonymise` casefolded, once: a policy key matches a result key in any case."""
    folded_drop: frozenset[str] = field(init=False)
    """`drop` casefolded, once; a key in both sets is dropped."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "folded_pseudonymise",
                           frozenset(key.casefold() for key in self.pseudonymise))
        object.__setattr__(self, "folded_drop", frozenset(key.casefold() for key in self.drop))

    @property
    def empty(self) -> bool:
        return not self.pseudonymise and not self.drop and not self.scrub_text


@dataclass(frozen=True)
class PiiRules:
    """A tool's personal-data policy: who may see what, and which arguments need a scope."""

    scope: str
    """Callers holding it get results as they are."""
    redaction: RedactionRules
    required: bool = False
    """The tool returns nothing but personal data: it needs the scope outright."""
    arguments: Mapping[tuple[str, ...], str] = field(default_factory=dict)
    """Argument path -> the scope giving it needs: ("email",) for an argument, or
    ("subscribers", "first_name") for a key of the objects of a list argument."""


@dataclass(frozen=True)
class ResultShape:
    """How the source's answer becomes the tool result: select, then extras, then the budget."""

    select: Expression | None = None
    pruned: PageDecoder | PrunedDecoder | None = None
    """Decodes a single answer to what `select` reads (gateway/spec/pages.py, reads.py); None
    when it reads no rows in part (decided at load: those answers go straight to orjson)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Compiled templates merged into the result after select."""
    empty_message: Template | None = None
    content: list[Any] | None = None
    """Compiled content-block templates replacing the default text rendering."""
    budget: Budget = Budget()
    paging_hint: str = ""
    """How a caller gets the rest of a trimmed result (depends only on the arguments)."""


@dataclass(frozen=True)
class Preview:
    """The read a write's preview runs to show the current state (`current`)."""

    request: CompiledRequest
    select: Expression | None = None
    checks: tuple[CompiledCheck, ...] = ()
    """Rules over the read (`current`): a broken one refuses the preview, issuing no token."""


@dataclass(frozen=True)
class Verification:
    """The read that tells whether a write whose answer was lost took effect."""

    request: CompiledRequest
    applied: Expression
    """Over {response, before, args, current, principal}: true, false, or anything else for
    "cannot tell"."""
    baseline: bool = False
    """The read is also made just before the write, as `before`."""
    hint: str = ""
    """Which read tool shows the change, for the caller (spec: `verify.hint`)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a tool is written, for what is reported about it after loading (its test cases)."""

    file: str
    line: int
    cases: tuple[int, ...] = ()
    """The line of each of its test cases (the case's `- name:`), in order."""


@dataclass(frozen=True)
class CompiledInput:
    """One request made of the client before a call runs (spec: `input_required`)."""

    key: str
    method: str
    params: Any
    """Compiled templates over the arguments and the answers of earlier rounds."""
    required: bool = False


InputRounds = tuple[tuple[CompiledInput, ...], ...]
"""The requests a call asks of its client, round by round (empty: it asks nothing)."""


@dataclass(frozen=True)
class CompiledTool:
    spec: ToolSpec
    service: str
    source: Source
    input_schema: dict[str, Any]
    validator: Any
    """jsonschema_rs validator of the input schema."""
    wire: dict[str, Any]
    """The Tool object as sent in tools/list."""
    scopes: frozenset[str]
    anonymous: bool
    defaults: dict[str, Any] = field(default_factory=dict)
    shape: ResultShape = ResultShape()
    pii: PiiRules | None = None
    """None when the service has no PII policy."""
    checks: tuple[CompiledCheck, ...] = ()
    lookups: tuple[CompiledLookup, ...] = ()
    preview: Preview | None = None
    verification: Verification | None = None
    max_in_flight: int = 50
    """Upstream requests of this tool open at once in one process."""
    param_headers: bool = False
    """Whether the input schema mirrors arguments into Mcp-Param-* headers (x-mcp-header)."""
    whole_numbers: Mapping[str, bool] = field(default_factory=dict)
    """Integer arguments (name -> whether a list of integers): a 1.0 sent is passed on as 1."""
    origin: Origin | None = None
    """Set by the loader; None for a tool compiled from a spec that is in no file."""
    rounds: InputRounds = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_write(self) -> bool:
        return self.spec.kind == "write"

    @property
    def request(self) -> CompiledRequest | None:
        """The one upstream request of a request-sourced tool (every write), else None."""
        return self.source.request if isinstance(self.source, RequestSource) else None


@dataclass(frozen=True)
class CompiledResource:
    """A resource: a read run like a tool, addressed by a fixed URI or a URI template."""

    spec: ResourceSpec
    tool: CompiledTool
    pattern: re.Pattern[str]
    variables: tuple[str, ...]
    wire: dict[str, Any]
    text: Template | None = None
    blob: Template | None = None

    @property
    def templated(self) -> bool:
        return bool(self.variables)

    def match(self, uri: str) -> dict[str, str] | None:
        """The template's variables in `uri`, or None when the URI is not this resource's."""
        found = self.pattern.fullmatch(uri)
        return found.groupdict() if found else None


@dataclass(frozen=True)
class CompiledPrompt:
    spec: PromptSpec
    wire: dict[str, Any]
    messages: tuple[tuple[str, Any], ...]
    """(role, a compiled text template or a compiled content block)."""
    patterns: dict[str, re.Pattern[str]]
    scopes: frozenset[str]
    rounds: InputRounds = ()


@dataclass(frozen=True, eq=False)
class CompiledService:
    """One service folder, compiled. Compared and hashed by identity: a reload makes new ones,
    so a cache keyed by a service never answers for another tree."""

    spec: ServiceSpec
    tools: dict[str, CompiledTool]
    folder: str
    resources: dict[str, CompiledResource] = field(default_factory=dict)
    prompts: dict[str, CompiledPrompt] = field(default_factory=dict)
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    """Line of each key of service.yaml, for problems found after loading."""
    view_of: str | None = None
    """For a virtual server: the endpoint of the service it shows a subset of."""

    @property
    def name(self) -> str:
        return self.spec.name

    @functools.cached_property
    def catalog_digest(self) -> str:
        """A digest of what clients may list (tools, resources, templates, prompts): it changes
        exactly when a reload changes one of them, so list answers carry it as their ETag."""
        catalog = [[t.wire for t in self.tools.values()],
                   [r.wire for r in self.resources.values()],
                   [p.wire for p in self.prompts.values()]]
        return hashlib.sha256(orjson.dumps(catalog, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def tools_for(self, scopes: frozenset[str]) -> list[dict[str, Any]]:
        """The wire tools a caller with these scopes may see."""
        return [t.wire for t in self.tools.values() if t.anonymous or t.scopes <= scopes]

    def resources_for(self, scopes: frozenset[str], *, templated: bool) -> list[dict[str, Any]]:
        return [r.wire for r in self.resources.values()
                if r.templated == templated and r.tool.scopes <= scopes]

    def prompts_for(self, scopes: frozenset[str]) -> list[dict[str, Any]]:
        return [p.wire for p in self.prompts.values() if p.scopes <= scopes]


@dataclass(frozen=True)
class Registry:
    """Every loaded service, by name and, with its virtual servers (`views`), by endpoint."""

    services: tuple[CompiledService, ...]
    views: tuple[CompiledService, ...] = ()
    by_endpoint: dict[str, CompiledService] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_endpoint", {
            s.spec.endpoint: s for s in (*self.services, *self.views)})

    def get(self, name: str) -> CompiledService | None:
        return next((s for s in self.services if s.name == name), None)
