"""Names the spec format accepts, made from what a document calls things. Pure.

Tool names are snake_case (`listPets` -> `list_pets`), at most 64 characters and unique in the
service. Argument names keep the document's spelling when a template can refer to it
(`petId`), else become snake_case (`X-Request-ID` -> `x_request_id`).
"""

from __future__ import annotations

import re
from typing import Final

MAX_NAME: Final = 64
IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED: Final = frozenset({"now", "confirmation_token"})
"""Argument names a template or the gateway already means something by: `{now}` is the clock,
and write tools take `confirmation_token` from the gateway."""


def snake(text: str) -> str:
    """`listPetsByID` -> `list_pets_by_id`; `/pets/{petId}` -> `pets_pet_id`."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", spaced)
    return re.sub(r"[^A-Za-z0-9]+", "_", spaced).strip("_").lower()


class Names:
    """Hands out names unique within one scope (a service's tools, a tool's arguments)."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self.taken: set[str] = set(taken or ())

    def claim(self, wanted: str, *, limit: int = MAX_NAME) -> str:
        """`wanted`, or `wanted_2`, `wanted_3`... cut to fit `limit`."""
        name = wanted[:limit].rstrip("_") or "x"
        number = 1
        while name in self.taken:
            number += 1
            suffix = f"_{number}"
            name = wanted[: limit - len(suffix)].rstrip("_") + suffix
        self.taken.add(name)
        return name


def tool_name(operation_id: object, method: str, path: str) -> str:
    """From the operationId when it has letters or digits, else from the method and path."""
    base = snake(operation_id) if isinstance(operation_id, str) else ""
    if not base:
        base = snake(f"{method} {path}")
    if base[0].isdigit():
        base = f"op_{base}"
    return base


def argument_name(name: str, names: Names, where: str) -> str:
    """A template-safe, unused argument name for a parameter or body property; a clash gets the
    parameter's location appended (`id_query`), then a number."""
    base = name if IDENTIFIER.match(name) and name not in RESERVED else snake(name)
    if not base or base in RESERVED:
        base = f"{base or 'value'}_{where}"
    if base[0].isdigit():
        base = f"p_{base}"
    if base in names.taken:
        base = f"{base}_{where}"
    return names.claim(base, limit=1000)


def file_slug(tag: str) -> str:
    """A tool file name for a tag: `Pet Store` -> `pet_store`; never `service`."""
    slug = snake(tag)[:60] or "untagged"
    return f"{slug}_tools" if slug == "service" else slug


def tag_label(tag: str) -> str | None:
    """A tag in the characters a tool's `tags` allow, or None when nothing is left."""
    label = re.sub(r"[^A-Za-z0-9_.:\-]+", "-", tag.strip()).strip("-")[:64]
    return label or None
