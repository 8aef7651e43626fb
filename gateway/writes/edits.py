"""What a person may change in the confirmation dialog of a write (`write.editable`): the form
fields offered, holding the values the call gave, and the arguments made of what comes back.
Pure; the result is checked like any call's arguments by the caller of `edited_arguments`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from gateway.spec.compiled import CompiledTool

_KEPT: Final = {
    "string": ("minLength", "maxLength", "format", "enum"),
    "number": ("minimum", "maximum"),
    "integer": ("minimum", "maximum"),
    "boolean": (),
}
"""The constraints of an argument a form field can carry (elicitation's primitive schemas)."""
_FORMATS: Final = frozenset({"email", "uri", "date", "date-time"})


def edit_fields(tool: CompiledTool, arguments: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The form fields for the editable arguments the call gave, by argument name."""
    write = tool.spec.write
    properties = tool.input_schema.get("properties", {})
    fields = {}
    for name in write.editable if write else ():
        if name in arguments and name in properties:
            fields[name] = _field(name, properties[name], arguments[name])
    return fields


def _field(name: str, schema: Mapping[str, Any], value: Any) -> dict[str, Any]:
    title = schema.get("title") or name.replace("_", " ").capitalize()
    field: dict[str, Any] = {"title": title}
    if schema.get("description"):
        field["description"] = schema["description"]
    if schema.get("type") == "array":
        labels = item_labels(value, naming_key(schema))
        field.update(type="array", items={"type": "string", "enum": labels}, default=labels,
                     minItems=max(1, int(schema.get("minItems", 1))))
        field["description"] = ("Untick any you do not want included. "
                                 + field.get("description", ""))[:500].rstrip()
        return field
    kind = str(schema.get("type"))
    field["type"] = kind
    for key in _KEPT.get(kind, ()):
        if key in schema and (key != "format" or schema[key] in _FORMATS):
            field[key] = schema[key]
    field["default"] = value
    return field


def naming_key(schema: Mapping[str, Any]) -> str | None:
    """The key that names an object item of a list: its email property, else its first
    required text property (None: items are not objects, or have neither)."""
    items = schema.get("items") or {}
    properties = items.get("properties") or {}
    texts = [str(key) for key, value in properties.items() if value.get("type") == "string"]
    emails = [key for key in texts if properties[key].get("format") == "email"]
    required = [key for key in texts if key in (items.get("required") or [])]
    found = emails or required
    return found[0] if found else None


def item_labels(items: Any, key: str | None) -> list[str]:
    """How each item of a list argument is named in a choice: the item itself when it is text
    or a number, else its `key` (a recipient's email) or first text value; numbered when two
    read the same, so that every label names exactly one item."""
    if not isinstance(items, list):
        return []
    labels = [_label(item, key) for item in items]
    if len(set(labels)) < len(labels):
        labels = [f"{index}. {label}" for index, label in enumerate(labels, start=1)]
    return labels


def _label(item: Any, key: str | None) -> str:
    if isinstance(item, str | int | float) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, dict):
        named = item.get(key) if key else None
        for value in (named, *item.values()):
            if isinstance(value, str) and value:
                return value[:200]
    return orjson.dumps(item).decode()[:200]


def edited_arguments(tool: CompiledTool, arguments: Mapping[str, Any],
                     content: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The call's arguments with the person's changes, and the names of those changed.

    Raises:
        ValueError: a choice that names no item of the list it narrows.
    """
    fields = edit_fields(tool, arguments)
    answers = content if isinstance(content, dict) else {}
    result = dict(arguments)
    for name, field in fields.items():
        if name not in answers:
            continue  # not sent back: kept as given
        answer = answers[name]
        if field["type"] == "array":
            key = naming_key(tool.input_schema["properties"][name])
            result[name] = _chosen(name, arguments[name], answer, key)
        else:
            result[name] = answer
    changed = tuple(name for name in fields if result[name] != arguments[name])
    return result, changed


def _chosen(name: str, items: list[Any], chosen: Any, key: str | None) -> list[Any]:
    labels = item_labels(items, key)
    if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
        raise ValueError(f"{name}: the answer is not a list of the offered choices")
    unknown = sorted(set(chosen) - set(labels))
    if unknown:
        raise ValueError(f"{name}: {unknown[0]!r} is not one of the offered choices (a list "
                         "can be narrowed in the dialog, not added to)")
    return [item for item, label in zip(items, labels, strict=True) if label in chosen]
