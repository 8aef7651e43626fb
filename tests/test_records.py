"""`record` (gateway/records.py): frozen to the type checker, a plain slotted dataclass at run
time, hashed and compared by its fields as a frozen dataclass is."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from mypy import api

from gateway.calls.context import Caller
from gateway.records import record


@record
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = dataclasses.field(default=())


def test_a_record_compares_hashes_and_replaces_as_a_frozen_dataclass_does() -> None:
    @dataclasses.dataclass(frozen=True)
    class Frozen:
        x: int
        y: int = 0
        tags: tuple[str, ...] = ()

    assert Point(1) == Point(1, 0) != Point(1, 2)
    assert hash(Point(1, 2)) == hash(Frozen(1, 2)) == hash((1, 2, ()))
    assert {Point(1), Point(1)} == {Point(1)}
    assert dataclasses.replace(Point(1, 2), y=3) == Point(1, 3)
    assert Point.__slots__ == ("x", "y", "tags")  # type: ignore[attr-defined]
    assert not hasattr(Point(1), "__dict__")


def test_the_records_of_a_request_are_records() -> None:
    caller_fields = {f.name for f in dataclasses.fields(Caller)}
    assert {"service", "token", "scopes", "tool"} <= caller_fields
    assert not Caller.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert Caller.__slots__  # type: ignore[attr-defined]


def test_assigning_to_a_field_is_refused_by_the_type_checker(tmp_path: Path) -> None:
    checked = tmp_path / "assigning.py"
    checked.write_text(textwrap.dedent("""
        from gateway.records import record

        @record
        class Point:
            x: int

        point = Point(1)
        point.x = 2
        Point("one")
    """))
    out, _, status = api.run([str(checked), "--strict", "--no-incremental",
                              "--follow-imports=silent"])
    assert status == 1
    assert 'Property "x" defined in "Point" is read-only' in out
    assert 'Argument 1 to "Point" has incompatible type "str"' in out
