"""`record`: the decorator of the small immutable records a request makes (its envelope, the
caller, the upstream request and answer, the outcome). Pure.

To the type checker a record is a frozen dataclass: assigning to a field is an error that
`mypy --strict` reports, as for `@dataclass(frozen=True)`. At run time it is a plain slotted
dataclass, hashed and compared by its fields as a frozen one is. The difference is the cost of
making one: a frozen dataclass's `__init__` sets each field through `object.__setattr__`,
about 0.25 us a field against 0.05 us for a plain assignment, and a tool call makes a dozen
records of up to twelve fields (about 15 us a call, 2-3% of a de-identified `list_feedback`).
Immutability is thus enforced before the code runs rather than while it runs; records built
once per loaded tree (specs, compiled tools) stay `@dataclass(frozen=True)`.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: type[T]) -> type[T]:
    """A frozen dataclass to the type checker, a slotted one made at full speed at run time."""
    made: type[T] = dataclasses.dataclass(slots=True, unsafe_hash=True)(cls)
    return made
