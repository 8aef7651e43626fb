"""The spec format of what the gateway computes over collected items: `filter` conditions
(fixed, or given by the caller as data) and `aggregate` groupings. Pure pydantic models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag

from gateway.spec.models import SpecModel


class ConditionSpec(SpecModel):
    """Keep an item when `field` (a JMESPath on it) compares to `value` (a template)."""

    field: str
    op: Literal["eq", "ne", "contains", "in", "gte", "lte", "gt", "lt", "exists"]
    value: Any
    """A template; when it renders absent (an optional argument not given) the condition is off."""


class GivenConditionsSpec(SpecModel):
    """Conditions the caller gives as data (a saved filter's, say): a list of {field, op,
    value} whose fields are names declared here, never expressions."""

    given: Any
    """A template giving the list; absent, null or [] adds no condition."""
    fields: dict[str, str]
    """Field name a caller may use -> a JMESPath on an item. A name ending in `*` names a
    family: its expression gives an object, and the rest of the caller's name is its key
    (`attributes.*` takes `attributes.region`)."""
    when: Any = None
    """A template; when set, the entry is on only while it renders a true value."""


def _filter_entry(value: Any) -> str:
    return "entry[given]" if isinstance(value, dict) and "given" in value else "entry[field]"


FilterEntry = Annotated[
    Annotated[ConditionSpec, Tag("entry[field]")]
    | Annotated[GivenConditionsSpec, Tag("entry[given]")],
    Discriminator(_filter_entry)]
"""One entry of `filter`: a fixed condition, or conditions the caller gives. (A tag with
brackets is left out of the key path of a problem, like pydantic's own union members.)"""


class CompareSpec(SpecModel):
    """Compare each group over the last `days` with the `days` before (period over period)."""

    field: str
    """A JMESPath giving an item's ISO date or timestamp."""
    days: Any
    """A template or number: the length of each period in days."""


class AggregateSpec(SpecModel):
    """Group the kept items and compute metrics per group."""

    by: str
    """A template naming one of `groups`, e.g. '{group_by}'."""
    groups: dict[str, str]
    """Group name -> JMESPath giving an item's group key (a list puts it in several groups)."""
    metrics: dict[str, str] = {"count": "count"}
    """Name -> count, or avg/sum/min/max/nps/distinct(JMESPath)."""
    sort: str | None = None
    """Metric to sort groups by, descending (default: count)."""
    compare: CompareSpec | None = None
    """Adds previous_<metric> and change_<metric> to every group."""
