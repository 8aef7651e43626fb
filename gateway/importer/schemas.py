"""OpenAPI schemas (3.0, 3.1 and Swagger 2.0 dialects) made plain JSON Schema 2020-12, with every
`$ref` inlined. Pure. A reference met again inside itself (a tree of comments, a person with a
manager) becomes a permissive object there, and so does anything nested deeper than MAX_DEPTH
or past the MAX_REFS budget: the result is always finite and small enough to publish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import jsonschema_rs

from gateway.importer.refs import Document

MAX_DEPTH: Final = 10
"""Nesting of schemas kept in arguments; deeper ones become permissive."""
MAX_RESULT_DEPTH: Final = 6
"""Nesting kept in output schemas: enough to show a result's shape, without publishing the
whole graph of models each answer links to."""
MAX_REFS: Final = 300
"""References inlined into one schema; past it they become permissive (a wide, deep model
would otherwise multiply into megabytes)."""
FORMATS: Final = frozenset({"date", "date-time", "email", "uuid", "uri"})
"""Formats kept: those the gateway checks (docs/spec-format.md). OpenAPI's own refinements
(int32, int64, float, double, byte, binary, password) say nothing a validator can use."""
PLAIN: Final = ("type", "format", "enum", "const", "default", "minimum", "exclusiveMinimum",
                "maximum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern",
                "minItems", "maxItems", "uniqueItems", "minContains", "maxContains",
                "minProperties", "maxProperties", "dependentRequired", "title", "description")
"""Keywords kept as they are, in the order they are written out (the type first)."""
ONE: Final = ("items", "contains", "additionalProperties", "propertyNames", "not", "if", "then",
              "else", "unevaluatedItems", "unevaluatedProperties")
LISTS: Final = ("allOf", "anyOf", "oneOf", "prefixItems")
MAPS: Final = ("patternProperties", "dependentSchemas")
JSON_TYPES: Final = frozenset({"string", "integer", "number", "boolean", "array", "object",
                               "null"})
Direction = Literal["request", "response"]


@dataclass
class Converter:
    """Converts the schemas of one document; `direction` says which of `readOnly` (request) or
    `writeOnly` (response) properties are left out."""

    document: Document
    direction: Direction
    notes: list[str] = field(default_factory=list)
    """Problems met on the way (a pattern no validator takes), for the report."""
    budget: int = MAX_REFS
    depth: int = 0
    """How deep schemas are kept (MAX_DEPTH, or MAX_RESULT_DEPTH for responses)."""
    patterns: dict[str, bool] = field(default_factory=dict)
    """Whether each pattern met is valid: documents repeat a few patterns many times."""

    def __post_init__(self) -> None:
        self.depth = MAX_DEPTH if self.direction == "request" else MAX_RESULT_DEPTH

    def convert(self, schema: Any) -> Any:
        """A fresh budget for one top-level schema."""
        self.budget = MAX_REFS
        return self._schema(schema, (), 0)

    def _schema(self, schema: Any, trail: tuple[str, ...], depth: int) -> Any:
        if isinstance(schema, bool):
            return schema
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(schema, ref, trail, depth)
        if depth > self.depth:
            return permissive(schema)
        out: dict[str, Any] = {}
        for key in PLAIN:
            if key in schema:
                out[key] = schema[key]
        for key in ONE:
            if key in schema:
                out[key] = self._one(key, schema[key], trail, depth)
        for key in LISTS:
            if isinstance(schema.get(key), list):
                out[key] = [self._schema(s, trail, depth + 1) for s in schema[key]]
        for key in MAPS:
            if isinstance(schema.get(key), dict):
                out[key] = {k: self._schema(s, trail, depth + 1) for k, s in schema[key].items()}
        self._properties(schema, out, trail, depth)
        self._dialects(schema, out)
        return merged_all_of(out)

    def _one(self, key: str, value: Any, trail: tuple[str, ...], depth: int) -> Any:
        if key == "items" and isinstance(value, list):  # Draft 4's tuple form
            return {"prefixItems": [self._schema(s, trail, depth + 1) for s in value]}
        return self._schema(value, trail, depth + 1)

    def _ref(self, schema: dict[str, Any], ref: str, trail: tuple[str, ...],
             depth: int) -> Any:
        target = self.document.target(ref)
        if ref in trail or depth > self.depth or self.budget <= 0 or not isinstance(
                target, dict | bool):
            cut = permissive(target if isinstance(target, dict) else {})
            why = "refers to itself" if ref in trail else (
                "is unresolved" if target is None else "nests too deep")
            cut["description"] = f"{ref.rsplit('/', 1)[-1]} ({why}; any value accepted)"
            return cut
        self.budget -= 1
        beside = {k: v for k, v in schema.items() if k != "$ref"}
        merged = {**target, **beside} if isinstance(target, dict) else target
        return self._schema(merged, (*trail, ref), depth)

    def _properties(self, schema: dict[str, Any], out: dict[str, Any],
                    trail: tuple[str, ...], depth: int) -> None:
        props = schema.get("properties")
        hidden = "readOnly" if self.direction == "request" else "writeOnly"
        if isinstance(props, dict):
            kept = {}
            for name, prop in props.items():
                resolved = self.document.follow(prop) if isinstance(prop, dict) else prop
                if isinstance(resolved, dict) and resolved.get(hidden) is True:
                    continue
                kept[name] = self._schema(prop, trail, depth + 1)
            out["properties"] = kept
        required = schema.get("required")
        if isinstance(required, list):
            names = [r for r in required if isinstance(r, str)]
            if isinstance(props, dict):  # a hidden property is required only the other way
                names = [n for n in names if n in out["properties"] or n not in props]
            if names:
                out["required"] = names

    def _valid(self, pattern: Any) -> bool:
        if not isinstance(pattern, str):
            return False
        if pattern not in self.patterns:
            self.patterns[pattern] = valid_pattern(pattern)
        return self.patterns[pattern]

    def _dialects(self, schema: dict[str, Any], out: dict[str, Any]) -> None:
        """OpenAPI 3.0 and Swagger 2.0 spellings made 2020-12 ones, and what no validator can
        use dropped."""
        kind = out.get("type")
        if kind == "file" or (isinstance(kind, list) and "file" in kind):
            out["type"] = "string"  # Swagger's upload type; its operation is not mapped
        elif isinstance(kind, str | list) and not set(
                [kind] if isinstance(kind, str) else kind) <= JSON_TYPES:
            del out["type"]
        if schema.get("nullable") is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        for bound, exclusive in (("minimum", "exclusiveMinimum"),
                                 ("maximum", "exclusiveMaximum")):
            if isinstance(out.get(exclusive), bool):
                if out.pop(exclusive) and bound in out:
                    out[exclusive] = out.pop(bound)
        if "format" in out and out["format"] not in FORMATS:
            del out["format"]
        if "pattern" in out and not self._valid(out["pattern"]):
            self.notes.append(f"pattern {out.pop('pattern')!r} is not a regular expression "
                              "every validator takes; left out")
        example = schema.get("example", _MISSING)
        examples = schema.get("examples")
        if isinstance(examples, list) and examples and all(map(_scalar, examples)):
            out["examples"] = examples[:5]
        elif example is not _MISSING and _scalar(example):
            out["examples"] = [example]


_MISSING: Final[Any] = object()


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def permissive(target: dict[str, Any]) -> dict[str, Any]:
    """What stands in for a schema that is cut off: an object that takes any keys when the
    schema was an object, else any value."""
    kind = target.get("type")
    if kind == "object" or "properties" in target or (
            isinstance(kind, list) and "object" in kind):
        return {"type": "object"}
    return {}


def valid_pattern(pattern: Any) -> bool:
    """Python's `re` (the loader's check) and the JSON Schema validator both take it."""
    if not isinstance(pattern, str):
        return False
    try:
        re.compile(pattern)
        jsonschema_rs.validator_for({"pattern": pattern})
    except (re.error, ValueError):
        return False
    return True


def object_properties(schema: Any) -> tuple[dict[str, Any], list[str]] | None:
    """The properties and required names of a plain object schema (its `allOf` parts merged),
    or None when it is anything else: not an object, a union, a map of any keys."""
    if not isinstance(schema, dict):
        return None
    if any(k in schema for k in ("anyOf", "oneOf", "not", "if", "patternProperties",
                                 "prefixItems", "dependentSchemas")):
        return None
    kind = schema.get("type", "object")
    if kind != "object" or isinstance(schema.get("additionalProperties"), dict):
        return None
    props = dict(schema.get("properties") or {})
    required = list(schema.get("required") or [])
    for part in schema.get("allOf") or []:
        merged = object_properties(part)
        if merged is None or set(merged[0]) & set(props):
            return None
        props.update(merged[0])
        required += [r for r in merged[1] if r not in required]
    if not props and "allOf" not in schema and "properties" not in schema:
        return None
    return props, required


MERGEABLE: Final = frozenset({"type", "title", "description", "properties", "required", "allOf"})


def merged_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    """An `allOf` of plain objects (an envelope and its payload, a base model and its
    extension) written as the one object it describes; anything else as it is."""
    parts = schema.get("allOf")
    if not isinstance(parts, list) or not set(schema) <= MERGEABLE or any(
            not isinstance(p, dict) or not set(p) <= MERGEABLE for p in parts):
        return schema
    found = object_properties(schema)
    if found is None:
        return schema
    merged = {k: v for k, v in schema.items() if k in ("title", "description")}
    merged = {"type": "object", **merged, "properties": found[0]}
    if found[1]:
        merged["required"] = found[1]
    return merged


def is_object(schema: Any) -> bool:
    """Whether a result is always a JSON object: `type: object`, or a plain object schema."""
    if not isinstance(schema, dict):
        return False
    return schema.get("type") == "object" or (
        "type" not in schema and object_properties(schema) is not None)
