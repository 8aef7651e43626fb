"""The spec format, version 1: tools, resources and prompts of a service folder's files.
Frozen pydantic models, unknown keys refused. Pure; service.yaml's models are in models.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from gateway.spec.cases import ToolTestCase
from gateway.spec.derived_specs import AggregateSpec, FilterEntry
from gateway.spec.inputs import InputRound, checked_rounds
from gateway.spec.models import NAME_PATTERN, Budget, HttpMethod, JsonType, QueryStyle, SpecModel


class InputProperty(SpecModel):
    """One argument (a JSON Schema subset), or the items/properties of one."""

    type: JsonType | list[JsonType] | None = None
    description: str | None = None
    title: str | None = None
    enum: list[Any] | None = None
    const: Any = None
    default: Any = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = Field(None, alias="exclusiveMinimum")
    exclusive_maximum: int | float | None = Field(None, alias="exclusiveMaximum")
    min_length: int | None = Field(None, alias="minLength", ge=0)
    max_length: int | None = Field(None, alias="maxLength", ge=0)
    pattern: str | None = None
    format: Literal["date", "date-time", "email", "uuid", "uri"] | None = None
    items: InputProperty | None = None
    min_items: int | None = Field(None, alias="minItems", ge=0)
    max_items: int | None = Field(None, alias="maxItems", ge=0)
    unique_items: bool | None = Field(None, alias="uniqueItems")
    properties: dict[str, InputProperty] | None = None
    additional_properties: bool = Field(False, alias="additionalProperties")
    required: bool | list[str] = False
    """On an argument: whether it must be given. On an object: JSON Schema's list of keys."""
    examples: list[Any] | None = None
    pii: Literal["read", "write"] | None = None
    """Giving this argument needs the service's PII read (or write) scope, e.g. search by email."""


def query_of(query: dict[str, Any]) -> dict[str, Any]:
    """A request's query with `from_input` spelled out: a list of arguments sent under their own
    names, or a map of argument -> parameter name (`{campaign_id: campaignId}`); each becomes
    `param: '{argument}'`, so an absent argument drops out as usual.

    Raises:
        ValueError: `from_input` of another shape, or naming a parameter given explicitly too.
    """
    if "from_input" not in query:
        return query
    rest = {k: v for k, v in query.items() if k != "from_input"}
    given = query["from_input"]
    if isinstance(given, list) and all(isinstance(name, str) for name in given):
        given = {name: name for name in given}
    if not isinstance(given, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
        raise ValueError("from_input takes a list of argument names, or a map of argument "
                         "name -> query parameter name")
    twice = sorted(set(given.values()) & set(rest))
    if twice:
        raise ValueError(f"query parameter(s) {', '.join(twice)} given both explicitly and by "
                         "from_input")
    return {**{param: f"{{{argument}}}" for argument, param in given.items()}, **rest}


class RequestSpec(SpecModel):
    """How arguments become one upstream request."""

    method: HttpMethod = "GET"
    path: str = Field(pattern=r"^/")
    """Path below the upstream base URL; `{arg}` parameters are always percent-encoded."""
    query: dict[str, Any] = {}
    headers: dict[str, str] = {}
    body: Any = None
    """A JSON body template (objects, lists, scalars and template strings)."""
    query_style: QueryStyle | None = None
    idempotent: bool = False
    """A read sent with another method than GET or HEAD (a search by POST, say) that is safe to
    send twice: the gateway may retry it like a GET. Ignored on a write's own request, which is
    never retried."""

    @field_validator("query")
    @classmethod
    def _spelled_out(cls, query: dict[str, Any]) -> dict[str, Any]:
        return query_of(query)


class CheckSpec(SpecModel):
    """A rule the arguments must keep, or the call is refused with `message` (a tool error the
    model reads, before anything is sent upstream)."""

    value: Any
    """A template; when it renders absent the rule does not apply."""
    op: Literal["eq", "ne", "contains", "in", "gte", "lte", "gt", "lt", "exists"]
    than: Any
    """A template (or a literal) to compare with."""
    message: str
    """A template stating the rule, e.g. 'date_range_start may reach back at most 12 months'."""


class ResponseSpec(SpecModel):
    """The response pipeline: select -> budget -> render."""

    select: str | None = None
    """A JMESPath expression over the upstream JSON body; its value is the tool result."""
    extra: dict[str, Any] = {}
    """Templates merged into the result after select, e.g. the effective date window."""
    content: list[dict[str, Any]] | None = None
    """The result's content blocks instead of the default (its JSON as text): templates such
    as {type: image, data: '...', mimeType: image/png} or {type: text, text: 'Hi {name}'}.
    structuredContent is still the result."""
    empty_message: str | None = None
    """When the selected result is empty (null, [] or {}), fail with this message (a template)
    instead, e.g. 'No form {form_uuid} in this project'."""
    budget: Budget | None = None
    output_schema: dict[str, Any] | None = None
    """Published as the tool's outputSchema; must describe an object."""


class PagesSpec(SpecModel):
    """How `collect` walks pages: one query parameter counts up until a stop condition."""

    param: str = "page"
    start: int = Field(1, ge=0)
    stop_when: str | None = None
    """A JMESPath over a page's body; when true, that page is the last."""
    total: str | None = None
    """A JMESPath over the first page's body: how many pages there are, reported as the
    `total` of progress notifications (at most `max_pages`)."""
    max_pages: int = Field(10, ge=1, le=100)


class CollectSpec(SpecModel):
    """Read items from (paged) upstream requests, for tools computed by the gateway."""

    request: RequestSpec
    items: str
    """A JMESPath giving the list of items of one page."""
    pages: PagesSpec | None = None
    max_items: int = Field(10_000, ge=1, le=100_000)
    """Stop reading once this many items were collected."""
    limit: Any = None
    """How many of the kept items to return (a template such as '{limit}'); all when absent.
    The count of all kept items is still reported as items_matched."""


class LookupSpec(SpecModel):
    """Fill a value the call did not give from a read, e.g. a default group's id, or a team
    member's email from the id the model knows."""

    request: RequestSpec
    select: str
    """A JMESPath over the read's body giving the value."""


class ToolPii(SpecModel):
    """A tool's own additions to the service's PII policy."""

    fields: list[str] = []
    drop: list[str] = []
    required: bool = False
    """The tool returns nothing but personal data: it needs the PII scope outright."""


class VerifySpec(SpecModel):
    """How to tell, by a read, whether a write whose answer was lost took effect."""

    request: RequestSpec
    """The read, rendered like the write's own request (arguments, `current`, principal)."""
    applied: str
    """A JMESPath over {response, before, args, current, principal}: true when the read shows
    the change applied, false when it shows it was not, anything else (null) when it cannot
    tell. `response` is the read's body; `before` is the same read made just before the write
    when `baseline` is set (e.g. to compare counts)."""
    baseline: bool = False
    """Also send the read just before the write (one more read per confirmed write)."""
    hint: str = Field(min_length=1, max_length=300)
    """How a caller checks it with a read tool, for when the read cannot tell, e.g.
    "get_feedback with this id lists the note in `notes`"."""


class WriteSpec(SpecModel):
    """What a write tool shows in its preview, and how its effect is verified."""

    preview: RequestSpec | None = None
    """A read whose result shows the current state; available to the write as `current`."""
    preview_select: str | None = None
    preview_checks: list[CheckSpec] = []
    """Rules over the current state (`current` in `$expr`), the arguments and the principal,
    checked after the preview read: a broken one refuses the preview in its own words, and no
    confirmation token is issued (e.g. the campaign must be enabled)."""
    verify: VerifySpec | None = None
    """Run once when the write's outcome is unknown (sent, answer lost), to report it as done,
    not applied, or still unknown."""
    irreversible: str | None = Field(None, min_length=1, max_length=200)
    """What makes the change one that cannot be taken back, in words a person reads after
    "This", e.g. "sends a real email": said in the confirmation a person is asked."""
    editable: list[str] = []
    """Arguments a person may change in the confirmation dialog before the change is made
    (clients that confirm by elicitation): a text, number or yes/no argument is a field holding
    the value given; a list is a choice of its items, all ticked, that the person can narrow.
    What comes back is checked like the call's own arguments."""

    @model_validator(mode="after")
    def _checks_need_a_read(self) -> WriteSpec:
        if self.preview_checks and self.preview is None:
            raise ValueError("`preview_checks` check the preview read: give `preview` too")
        return self


class Annotations(SpecModel):
    """MCP tool annotations; derived from `kind` unless given here."""

    read_only_hint: bool | None = Field(None, alias="readOnlyHint")
    destructive_hint: bool | None = Field(None, alias="destructiveHint")
    idempotent_hint: bool | None = Field(None, alias="idempotentHint")
    open_world_hint: bool | None = Field(None, alias="openWorldHint")


class ReadSpec(SpecModel):
    """What tools and resources share: their arguments and how the answer is obtained."""

    input: dict[str, InputProperty] = {}
    input_schema: dict[str, Any] | None = None
    """A full JSON Schema (2020-12) for the arguments instead of `input`, published as is."""
    checks: list[CheckSpec] = []
    """Rules over the arguments (and the principal) checked before anything is sent."""
    lookups: dict[str, LookupSpec] = {}
    """name -> a read that fills `{name}` when the call gives no such argument. It runs only when
    every argument its request names is given; otherwise `{name}` stays absent."""
    request: RequestSpec | None = None
    collect: CollectSpec | None = None
    filter: list[FilterEntry] = []
    filter_match: Any = None
    """A template giving `all` (the default: an item must pass every active condition) or
    `any` (one is enough), e.g. '{match}'."""
    aggregate: AggregateSpec | None = None
    response: ResponseSpec = ResponseSpec()
    result: Any = None
    """For reads answered by the gateway itself (no `request`): a result template."""
    pii: ToolPii = ToolPii()
    max_in_flight: int | None = Field(None, ge=1, le=100_000)
    """Upstream requests of this tool open at once in one process; past it a call waits briefly,
    then is answered "busy" without being sent. Default: the service's
    `upstream.max_in_flight_per_tool`."""


EDITABLE_TYPES: Final = ("string", "number", "integer", "boolean", "array")


class ToolSpec(ReadSpec):
    name: str = Field(pattern=NAME_PATTERN)
    title: str | None = None
    kind: Literal["read", "write", "meta"]
    description: str
    scopes: list[str] = []
    tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]+$")]] = []
    """Labels a virtual server can select the tool by (`tag:<tag>`)."""
    annotations: Annotations | None = None
    write: WriteSpec | None = None
    input_required: list[InputRound] = []
    """Requests made of the client before the tool runs, round by round (2026-07-28)."""
    tests: list[ToolTestCase] = []

    _rounds = field_validator("input_required")(checked_rounds)

    @model_validator(mode="after")
    def _one_source(self) -> ToolSpec:
        sources = [s for s in (self.request, self.collect, self.result) if s is not None]
        if len(sources) != 1:
            raise ValueError("a tool needs exactly one of `request` (one upstream call), "
                             "`collect` (paged reads) or `result` (answered by the gateway)")
        if (self.filter or self.filter_match is not None or self.aggregate) and (
                self.collect is None):
            raise ValueError("`filter` and `aggregate` work on `collect`ed items")
        if self.write is not None and self.kind != "write":
            raise ValueError("`write` is for tools of kind: write")
        if self.kind == "write" and self.request is None:
            raise ValueError("a write tool sends one `request`")
        for name in self.write.editable if self.write else ():
            if name not in self.input:
                raise ValueError(f"`write.editable` names {name!r}, which is not in `input`")
            if self.input[name].type not in EDITABLE_TYPES:
                raise ValueError(f"`write.editable`: {name!r} is not a string, number, integer, "
                                 "boolean or array argument")
        if self.kind == "write" and self.input_required:
            raise ValueError("a write tool asks for its confirmation itself: `input_required` "
                             "is for read and meta tools")
        return self


class ResourceSpec(ReadSpec):
    """A resource read by URI: a read tool addressed as `uri` (fixed, or a template whose
    `{name}` parts are arguments declared in `input`)."""

    uri: str = Field(pattern=r"^[a-z][a-z0-9+.-]*://\S+$")
    name: str = Field(pattern=NAME_PATTERN)
    title: str | None = None
    description: str = ""
    mime_type: str = "application/json"
    scopes: list[str] = []
    text: str | None = None
    """A template giving the resource's text instead of its result's JSON."""
    blob: str | None = None
    """A template giving base64 data: the resource is binary (`blob` contents)."""

    def as_tool(self) -> ToolSpec:
        """The read this resource stands for, compiled and run like a tool."""
        fields = self.model_dump(exclude={"uri", "mime_type", "text", "blob"}, by_alias=True,
                                 exclude_defaults=True)
        return ToolSpec.model_validate({**fields, "kind": "read",
                                        "description": self.description or self.name})


class PromptArgumentSpec(SpecModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    description: str = ""
    required: bool = False
    pattern: str | None = None
    """A regular expression the value must match."""
    max_length: int = Field(500, ge=1, le=10_000)


class PromptMessageSpec(SpecModel):
    role: Literal["user", "assistant"] = "user"
    text: str | None = None
    """A template over the prompt's arguments; `{arg ?? 'text'}` gives optional ones a default."""
    content: dict[str, Any] | None = None
    """Any other content block instead of text, as templates: {type: image, data, mimeType} or
    {type: resource, resource: {uri: '{resourceUri}', mimeType: text/plain, text: '...'}}."""

    @model_validator(mode="after")
    def _text_or_content(self) -> PromptMessageSpec:
        if (self.text is None) == (self.content is None):
            raise ValueError("a message needs exactly one of `text` or `content`")
        return self


class PromptSpec(SpecModel):
    name: str = Field(pattern=NAME_PATTERN)
    title: str | None = None
    description: str = ""
    scopes: list[str] = []
    arguments: list[PromptArgumentSpec] = []
    messages: list[PromptMessageSpec] = Field(min_length=1)
    input_required: list[InputRound] = []
    """Requests made of the client before the messages are rendered, round by round."""

    _rounds = field_validator("input_required")(checked_rounds)


class SpecFile(SpecModel):
    """Any file of a service folder other than service.yaml."""

    version: Literal[1] = 1
    tools: list[ToolSpec] = []
    resources: list[ResourceSpec] = []
    prompts: list[PromptSpec] = []
