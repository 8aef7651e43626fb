"""The compiled, immutable form of a spec tree: what the request path reads. Pure.

Everything that can be done once is done here at load time: input schemas and their validators,
path/query/body templates, JMESPath expressions, budgets, annotations and the wire form of each
tool. A reload builds a new Registry and swaps it whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

from gateway.jmes import Expression, compile_expression
from gateway.specs import (
    Budget,
    InputProperty,
    QueryStyle,
    ServiceSpec,
    ToolSpec,
)
from gateway.templates import Ref, Template, compile_template, compile_value

DEFAULT_MAX_STRING = 10_000
"""maxLength given to string arguments that declare no bound of their own."""
DEFAULT_MAX_ITEMS = 1_000
"""maxItems given to array arguments that declare no bound of their own."""


def property_schema(prop: InputProperty) -> dict[str, Any]:
    """JSON Schema of one input property (the gateway-only `required: true` flag removed)."""
    schema: dict[str, Any] = prop.model_dump(
        by_alias=True,
        exclude_none=True,
        exclude={"required", "items", "properties", "additional_properties", "default", "const"},
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
    path: tuple[PathPart, ...] = ()
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Template] = field(default_factory=dict)
    body: Any = None
    select: Expression | None = None
    budget: Budget = Budget()
    query_style: QueryStyle = QueryStyle()
    result: Any = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CompiledService:
    spec: ServiceSpec
    tools: dict[str, CompiledTool]
    folder: str
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict, compare=False)
    """Line of each key of service.yaml, for problems found after loading."""
    _lists: dict[frozenset[str], list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

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
            if ref.source != "arg":
                raise ValueError(f"path segment {segment!r} may only name an argument")
            parts.append(PathPart(ref=ref))
        elif template.refs:
            raise ValueError(f"path segment {segment!r} must be a whole {{argument}} or literal")
        elif segment:
            parts.append(PathPart(literal=segment))
    return tuple(parts)


def compile_tool(tool: ToolSpec, service: ServiceSpec) -> CompiledTool:
    """Compile one validated tool spec.

    Raises:
        ValueError, jmespath.exceptions.ParseError, TemplateSyntaxError: reported by the loader.
    """
    schema = input_schema(tool.input)
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
    request = tool.request
    return CompiledTool(
        spec=tool,
        service=service.name,
        input_schema=schema,
        validator=jsonschema_rs.validator_for(schema, validate_formats=True),
        defaults={k: p.default for k, p in tool.input.items() if "default" in p.model_fields_set},
        wire=wire,
        scopes=frozenset(tool.scopes),
        anonymous=tool.name in service.auth.anonymous_tools,
        path=compile_path(request.path) if request else (),
        query=compile_value(request.query) if request else {},
        headers={k: compile_template(v) for k, v in request.headers.items()} if request else {},
        body=compile_value(request.body) if request and request.body is not None else None,
        select=compile_expression(tool.response.select) if tool.response.select else None,
        budget=budget,
        query_style=(request.query_style if request and request.query_style else
                     service.upstream.query_style),
        result=compile_value(tool.result) if tool.result is not None else None,
    )


def _first(budget: Budget | None, key: str, fallback: int | None) -> int | None:
    value = getattr(budget, key) if budget is not None else None
    return value if value is not None else fallback
