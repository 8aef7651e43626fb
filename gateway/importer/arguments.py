"""A tool's arguments written in the spec format: the short `input:` form when every argument
fits it (docs/spec-format.md, "Input properties"), else `input_schema:`, a full JSON Schema.
Pure.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import ValidationError

from gateway.importer.parameters import Argument
from gateway.spec.tools import InputProperty

PROPERTY_KEYS: Final = frozenset({
    "type", "description", "title", "enum", "const", "default", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "format",
    "items", "minItems", "maxItems", "uniqueItems", "properties", "additionalProperties",
    "required", "examples"})


def input_block(arguments: list[Argument], *, short: bool = True) -> tuple[str, dict[str, Any]]:
    """(`input`, properties) or (`input_schema`, schema); `short=False` forces the schema."""
    properties: dict[str, Any] = {}
    for argument in arguments if short else ():
        prop = as_property(argument.schema)
        if prop is None or (argument.required and isinstance(prop.get("required"), list)):
            break
        if argument.required:
            prop = {k: v for k, v in prop.items() if k == "type"} | {"required": True} | prop
        properties[argument.name] = prop
    else:
        if short and _valid(properties):
            return "input", properties
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {a.name: a.schema for a in arguments},
        "additionalProperties": False,
    }
    required = [a.name for a in arguments if a.required]
    if required:
        schema["required"] = required
    return "input_schema", schema


def as_property(schema: Any) -> dict[str, Any] | None:
    """The schema as an input property, or None when it uses more than that subset. An object
    says `additionalProperties: true` when the schema allowed other keys by leaving it out,
    because an input property refuses them unless told."""
    if not isinstance(schema, dict) or not set(schema) <= PROPERTY_KEYS:
        return None
    prop = dict(schema)
    if "items" in prop:
        items = as_property(prop["items"])
        if items is None:
            return None
        prop["items"] = items
    if isinstance(prop.get("properties"), dict):
        nested = {name: as_property(value) for name, value in prop["properties"].items()}
        if any(value is None for value in nested.values()):
            return None
        prop["properties"] = nested
    if not isinstance(prop.get("additionalProperties", False), bool):
        return None
    kind = prop.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in prop:
        prop.setdefault("additionalProperties", True)
    return prop


def _valid(properties: dict[str, Any]) -> bool:
    try:
        for prop in properties.values():
            InputProperty.model_validate(prop)
    except ValidationError:
        return False
    return True
