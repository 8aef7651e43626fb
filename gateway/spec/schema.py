"""The JSON Schemas a tool publishes: its inputSchema from the spec's `input`, and its annotations.
Pure; used by the compiler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.spec.tools import InputProperty, ToolSpec
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


def with_confirmation(schema: dict[str, Any]) -> dict[str, Any]:
    """Write tools take the confirmation token of their preview as an optional argument."""
    properties = dict(schema["properties"])
    properties[CONFIRMATION_ARGUMENT] = {
        "type": "string", "maxLength": 1024,
        "description": "Token from this tool's preview; without it the call only previews.",
    }
    return {**schema, "properties": properties}
