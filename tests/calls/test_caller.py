"""A caller turned to a tool (`Caller.calling`, built field by field on every call for speed)
keeps every field it had but the tool's own two: a field added to Caller later and forgotten
there would fail this, not pass silently with its default."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace
from typing import Any

from gateway.calls.context import Caller

TOOL_FIELDS = {"tool", "tool_cap"}


def test_calling_a_tool_keeps_every_other_field() -> None:
    given: dict[str, Any] = {f.name: object() for f in fields(Caller)}  # none a default
    tool: Any = SimpleNamespace(name="list_feedback", max_in_flight=7)
    turned = Caller(**given).calling(tool)
    assert (turned.tool, turned.tool_cap) == ("list_feedback", 7)
    for name in {f.name for f in fields(Caller)} - TOOL_FIELDS:
        assert getattr(turned, name) is given[name], name
