"""The compiled, immutable form of a spec tree: what the request path reads. Pure.

Everything that can be done once is done here at load time: input schemas and their validators,
path/query/body templates, JMESPath expressions, budgets, annotations and the wire form of each
tool. A reload builds a new Registry and swaps it whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

from gateway.calls.derive import CompiledAggregate, CompiledCondition, parse_metric
from gateway.calls.redaction import RedactionRules
from gateway.calls.shaping import paging_hint
from gateway.protocol.sdk_inbound import x_mcp_header_map
from gateway.spec.jmes import Expression, compile_expression
from gateway.spec.models import (
    AggregateSpec,
    Budget,
    InputProperty,
    LookupSpec,
    PromptSpec,
    QueryStyle,
    RequestSpec,
    ResourceSpec,
    ServiceSpec,
    ToolSpec,
)
from gateway.spec.templates import Ref, Template, compile_template, compile_value, value_refs
from gateway.writes.confirmations import CONFIRMATION_ARGUMENT

DEFAULT_MAX_STRING = 10_000
"""maxLength given to string arguments that declare no bound of their own."""
DEFAULT_MAX_ITEMS = 1_000
"""maxItems given to array arguments that declare no bound of their own."""


def property_schema(prop: InputProperty) -> dict[str, Any]:
    """JSON Schema of one input property (the gateway-only `required: true` flag removed)."""
    schema: dict[str, Any] = prop.model_dump(
        by_alias=True,
        exclude_none=True,
        exclude={"required", "items", "properties", "additional_properties", "default", "const",
                 "pii"},
    )
    # default/const may legitimately be null-free falsy values; keep them when set explicitly.
    for key in ("default", "const"):
        if key in prop.model_fields_set:
            schema[key] = getattr(prop, key)
    types = prop.type if isinstance(prop.type, list) else [prop.type]
    if "string" in types and prop.max_length is None and prop.enum is None:
        schema["maxLength"] = DEFAULT_MAX_STRING
    if "array" in types and prop.max_items is None:
        schema["maxItems"] = DEFAULT_MAX_ITEMS
    if prop.items is not None:
        schema["items"] = property_schema(prop.items)
    if prop.properties is not None or _is_object(prop):
        props = prop.properties or {}
        schema["properties"] = {k: property_schema(v) for k, v in props.items()}
        required = prop.required if isinstance(prop.required, list) else [
            k for k, v in props.items() if v.required is True
        ]
        if required:
            schema["required"] = required
        schema["additionalProperties"] = prop.additional_properties
    return schema


def _is_object(prop: InputProperty) -> bool:
    return prop.type == "object" or (isinstance(prop.type, list) and "object" in prop.type)


def input_schema(inputs: Mapping[str, InputProperty]) -> dict[str, Any]:
    """The tool's inputSchema: an object of its arguments, no others allowed."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: property_schema(p) for name, p in inputs.items()},
        "additionalProperties": False,
    }
    required = [name for name, p in inputs.items() if p.required is True]
    if required:
        schema["required"] = required
    return schema


def derived_annotations(tool: ToolSpec) -> dict[str, Any]:
    """MCP annotations from the tool's kind, overridden by explicit ones."""
    base: dict[str, Any] = {
        "read": {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True,
                 "openWorldHint": True},
        "meta": {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True,
                 "openWorldHint": False},
        "write": {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False,
                  "openWorldHint": True},
    }[tool.kind]
    if tool.annotations is not None:
        base.update(tool.annotations.model_dump(by_alias=True, exclude_none=True))
    if tool.title:
        base["title"] = tool.title
    return base


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


@dataclass(frozen=True)
class CompiledCollect:
    request: CompiledRequest
    items: Expression
    page_param: str | None
    page_start: int
    stop_when: Expression | None
    max_pages: int
    max_items: int
    limit: Any = None


@dataclass(frozen=True)
class CompiledLookup:
    name: str
    request: CompiledRequest
    select: Expression
    needs: frozenset[str]
    """Arguments the request refers to; all must be present for the lookup to run."""


@dataclass(frozen=True)
class CompiledCheck:
    value: Any
    op: str
    than: Any
    message: Any


@dataclass(frozen=True)
class CompiledTool:
    spec: ToolSpec
    service: str
    input_schema: dict[str, Any]
    validator: Any
    """jsonschema_rs validator of the input schema."""
    defaults: dict[str, Any]
    wire: dict[str, Any]
    """The Tool object as sent in tools/list."""
    scopes: frozenset[str]
    anonymous: bool
    param_headers: bool = False
    """Whether the input schema mirrors arguments into Mcp-Param-* headers (x-mcp-header)."""
    checks: tuple[CompiledCheck, ...] = ()
    lookups: tuple[CompiledLookup, ...] = ()
    request: CompiledRequest | None = None
    collect: CompiledCollect | None = None
    conditions: tuple[CompiledCondition, ...] = ()
    aggregate: CompiledAggregate | None = None
    select: Expression | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Compiled templates merged into the result after select."""
    empty_message: Template | None = None
    content: list[Any] | None = None
    """Compiled content-block templates replacing the default text rendering."""
    budget: Budget = Budget()
    paging_hint: str = ""
    """How a caller gets the rest of a trimmed result (depends only on the arguments)."""
    result: Any = None
    redaction: RedactionRules | None = None
    """None when the service has no PII policy."""
    pii_scope: str | None = None
    pii_required: bool = False
    pii_arguments: dict[tuple[str, ...], str] = field(default_factory=dict)
    """Argument path -> the scope giving it needs: ("email",) for an argument, or
    ("subscribers", "first_name") for a key of the objects of a list argument."""
    preview: CompiledRequest | None = None
    preview_select: Expression | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_write(self) -> bool:
        return self.spec.kind == "write"


_URI_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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


def compile_resource(resource: ResourceSpec, service: ServiceSpec) -> CompiledResource:
    """Raises:
        ValueError, TemplateSyntaxError, jmespath errors: reported by the loader.
    """
    variables = tuple(_URI_VARIABLE.findall(resource.uri))
    pieces = _URI_VARIABLE.split(resource.uri)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/?#]+)"
                    for i, p in enumerate(pieces))
    wire: dict[str, Any] = {"name": resource.name, "mimeType": resource.mime_type}
    wire["uriTemplate" if variables else "uri"] = resource.uri
    if resource.title:
        wire["title"] = resource.title
    if resource.description:
        wire["description"] = resource.description
    return CompiledResource(resource, compile_tool(resource.as_tool(), service),
                            re.compile(regex), variables, wire,
                            compile_template(resource.text) if resource.text is not None else None,
                            compile_template(resource.blob) if resource.blob is not None else None)


@dataclass(frozen=True)
class CompiledPrompt:
    spec: PromptSpec
    wire: dict[str, Any]
    messages: tuple[tuple[str, Any], ...]
    """(role, a compiled text template or a compiled content block)."""
    patterns: dict[str, re.Pattern[str]]
    scopes: frozenset[str]


def compile_prompt(prompt: PromptSpec) -> CompiledPrompt:
    """Raises:
        TemplateSyntaxError, re.error: reported by the loader.
    """
    wire: dict[str, Any] = {"name": prompt.name, "arguments": [
        {"name": a.name, "description": a.description, "required": a.required}
        for a in prompt.arguments]}
    if prompt.title:
        wire["title"] = prompt.title
    if prompt.description:
        wire["description"] = prompt.description
    return CompiledPrompt(
        prompt, wire,
        tuple((m.role, compile_template(m.text) if m.text is not None else compile_value(m.content))
              for m in prompt.messages),
        {a.name: re.compile(a.pattern) for a in prompt.arguments if a.pattern},
        frozenset(prompt.scopes))


@dataclass(frozen=True)
class CompiledService:
    spec: ServiceSpec
    tools: dict[str, CompiledTool]
    folder: str
    resources: dict[str, CompiledResource] = field(default_factory=dict)
    prompts: dict[str, CompiledPrompt] = field(default_factory=dict)
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict, compare=False)
    """Line of each key of service.yaml, for problems found after loading."""
    _lists: dict[frozenset[str], list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def resources_for(self, scopes: frozenset[str], *, templated: bool) -> list[dict[str, Any]]:
        return [r.wire for r in self.resources.values()
                if r.templated == templated and r.tool.scopes <= scopes]

    def prompts_for(self, scopes: frozenset[str]) -> list[dict[str, Any]]:
        return [p.wire for p in self.prompts.values() if p.scopes <= scopes]

    def tools_for(self, scopes: frozenset[str]) -> list[dict[str, Any]]:
        """The wire tools a caller with these scopes may see; computed once per scope set."""
        cached = self._lists.get(scopes)
        if cached is None:
            cached = [t.wire for t in self.tools.values() if t.scopes <= scopes or t.anonymous]
            if len(self._lists) < 1024:  # bounded: scope sets are few in practice
                self._lists[scopes] = cached
        return cached


@dataclass(frozen=True)
class Registry:
    """Every loaded service, by name and by endpoint path."""

    services: tuple[CompiledService, ...]
    by_endpoint: dict[str, CompiledService] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_endpoint", {s.spec.endpoint: s for s in self.services})

    def get(self, name: str) -> CompiledService | None:
        return next((s for s in self.services if s.name == name), None)


def compile_path(path: str) -> tuple[PathPart, ...]:
    """Split a path template into literal pieces and whole-segment arguments.

    Raises:
        ValueError: an argument that is not a whole path segment, or a non-argument reference.
    """
    parts: list[PathPart] = []
    for segment in path.split("/")[1:]:
        parts.append(PathPart(literal="/"))
        template = compile_template(segment)
        ref = template.whole
        if ref is not None:
            if ref.source == "now":
                raise ValueError(f"path segment {segment!r} may only name an argument or "
                                 "principal field")
            parts.append(PathPart(ref=ref))
        elif template.refs:
            raise ValueError(f"path segment {segment!r} must be a whole {{argument}} or literal")
        elif segment:
            parts.append(PathPart(literal=segment))
    return tuple(parts)


def compile_request(request: RequestSpec, service: ServiceSpec) -> CompiledRequest:
    """Raises:
        ValueError, TemplateSyntaxError: reported by the loader.
    """
    return CompiledRequest(
        method=request.method,
        path=compile_path(request.path),
        query=compile_value(request.query),
        headers={k: compile_template(v) for k, v in request.headers.items()},
        body=compile_value(request.body) if request.body is not None else None,
        query_style=request.query_style or service.upstream.query_style,
    )


def compile_aggregate(spec: AggregateSpec) -> CompiledAggregate:
    metrics = {}
    for name, text in spec.metrics.items():
        function, field_text = parse_metric(text)
        metrics[name] = (function, compile_expression(field_text) if field_text else None)
    if spec.sort is not None and spec.sort not in metrics:
        raise ValueError(f"aggregate.sort names no metric: {spec.sort!r}")
    return CompiledAggregate(
        by=compile_value(spec.by),
        groups={name: compile_expression(expr) for name, expr in spec.groups.items()},
        metrics=metrics,
        sort=spec.sort,
        compare_field=compile_expression(spec.compare.field) if spec.compare else None,
        compare_days=compile_value(spec.compare.days) if spec.compare else None,
    )


def redaction_rules(tool: ToolSpec, service: ServiceSpec) -> RedactionRules | None:
    policy = service.pii
    if policy is None:
        return None
    return RedactionRules(
        pseudonymise=frozenset([*policy.fields, *tool.pii.fields]),
        drop=frozenset([*policy.drop, *tool.pii.drop]),
        scrub_text=policy.scrub_text,
    )


def _with_confirmation(schema: dict[str, Any]) -> dict[str, Any]:
    """Write tools take the confirmation token of their preview as an optional argument."""
    properties = dict(schema["properties"])
    properties[CONFIRMATION_ARGUMENT] = {
        "type": "string", "maxLength": 1024,
        "description": "Token from this tool's preview; without it the call only previews.",
    }
    return {**schema, "properties": properties}


def compile_tool(tool: ToolSpec, service: ServiceSpec) -> CompiledTool:
    """Compile one validated tool spec.

    Raises:
        ValueError, jmespath.exceptions.ParseError, TemplateSyntaxError: reported by the loader.
    """
    schema = tool.input_schema if tool.input_schema is not None else input_schema(tool.input)
    if tool.kind == "write":
        schema = _with_confirmation(schema)
    wire: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": schema,
        "annotations": derived_annotations(tool),
    }
    if tool.title:
        wire["title"] = tool.title
    budget = Budget(
        max_items=_first(tool.response.budget, "max_items", service.budget.max_items),
        max_bytes=_first(tool.response.budget, "max_bytes", service.budget.max_bytes),
    )
    if tool.response.output_schema is not None:
        wire["outputSchema"] = tool.response.output_schema
    collect = None
    if tool.collect is not None:
        pages = tool.collect.pages
        collect = CompiledCollect(
            request=compile_request(tool.collect.request, service),
            items=compile_expression(tool.collect.items),
            page_param=pages.param if pages else None,
            page_start=pages.start if pages else 1,
            stop_when=compile_expression(pages.stop_when) if pages and pages.stop_when else None,
            max_pages=pages.max_pages if pages else 1,
            max_items=tool.collect.max_items,
            limit=compile_value(tool.collect.limit) if tool.collect.limit is not None else None,
        )
    policy = service.pii
    pii_arguments: dict[tuple[str, ...], str] = {}
    if policy is not None:
        scopes = {"read": policy.scope, "write": policy.write_scope or policy.scope}
        for name, prop in tool.input.items():
            if prop.pii is not None:
                pii_arguments[(name,)] = scopes[prop.pii]
            nested = prop.items.properties if prop.items is not None else prop.properties
            for key, inner in (nested or {}).items():
                if inner.pii is not None:
                    pii_arguments[(name, key)] = scopes[inner.pii]
    write = tool.write
    return CompiledTool(
        spec=tool,
        service=service.name,
        input_schema=schema,
        validator=jsonschema_rs.validator_for(schema, validate_formats=True),
        defaults={k: p.default for k, p in tool.input.items() if "default" in p.model_fields_set},
        wire=wire,
        # A tool that returns nothing but personal data needs the PII scope like any other:
        # it is not listed without it, and calling it answers 403 naming it.
        scopes=frozenset(tool.scopes) | (frozenset({policy.scope})
                                          if policy is not None and tool.pii.required
                                          else frozenset()),
        anonymous=tool.name in service.auth.anonymous_tools or not service.auth.required,
        param_headers=bool(x_mcp_header_map(schema)),
        checks=tuple(CompiledCheck(compile_value(c.value), c.op, compile_value(c.than),
                                   compile_value(c.message)) for c in tool.checks),
        lookups=tuple(_compile_lookup(name, spec, service) for name, spec in tool.lookups.items()),
        request=compile_request(tool.request, service) if tool.request else None,
        collect=collect,
        conditions=tuple(CompiledCondition(compile_expression(c.field), c.op,
                                           compile_value(c.value)) for c in tool.filter),
        aggregate=compile_aggregate(tool.aggregate) if tool.aggregate else None,
        select=compile_expression(tool.response.select) if tool.response.select else None,
        extra=compile_value(tool.response.extra),
        empty_message=(compile_template(tool.response.empty_message)
                       if tool.response.empty_message else None),
        content=compile_value(tool.response.content) if tool.response.content else None,
        budget=budget,
        paging_hint=paging_hint(set(tool.input) | set(
            (tool.input_schema or {}).get("properties") or {})),
        result=compile_value(tool.result) if tool.result is not None else None,
        redaction=redaction_rules(tool, service),
        pii_scope=policy.scope if policy else None,
        pii_required=tool.pii.required,
        pii_arguments=pii_arguments,
        preview=compile_request(write.preview, service) if write and write.preview else None,
        preview_select=(compile_expression(write.preview_select)
                        if write and write.preview_select else None),
    )


def _compile_lookup(name: str, spec: LookupSpec, service: ServiceSpec) -> CompiledLookup:
    request = compile_request(spec.request, service)
    refs = [p.ref for p in request.path if p.ref is not None]
    refs += value_refs(request.query) + value_refs(request.body)
    refs += [r for t in request.headers.values() for r in t.refs]
    return CompiledLookup(name, request, compile_expression(spec.select),
                          frozenset(r.name for r in refs if r.source == "arg"))


def _first(budget: Budget | None, key: str, fallback: int | None) -> int | None:
    value = getattr(budget, key) if budget is not None else None
    return value if value is not None else fallback
