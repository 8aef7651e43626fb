"""Calendar-month offsets of `{now...}` templates: a month back is a calendar month, not 30
days, and a day the target month lacks becomes its last day."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.spec.templates import ABSENT, RenderContext, compile_template, render


def rendered(text: str, now: datetime, **arguments: Any) -> Any:
    return render(compile_template(text), RenderContext(arguments, {}, now))


@pytest.mark.parametrize(("text", "now", "expected"), [
    ("{now-11mo:month}-01", datetime(2026, 11, 23, 12, tzinfo=UTC), "2025-12-01"),
    ("{now-11mo:month}", datetime(2026, 1, 31, tzinfo=UTC), "2025-02"),
    ("{now:month}", datetime(2026, 11, 1, tzinfo=UTC), "2026-11"),
    ("{now-1mo:date}", datetime(2026, 3, 31, tzinfo=UTC), "2026-02-28"),
    ("{now-1mo:date}", datetime(2028, 3, 31, tzinfo=UTC), "2028-02-29"),
    ("{now+2mo:date}", datetime(2026, 12, 31, tzinfo=UTC), "2027-02-28"),
    ("{now-12mo}", datetime(2026, 2, 28, 8, 30, tzinfo=UTC), "2025-02-28T08:30:00Z"),
    ("{now-1m}", datetime(2026, 2, 28, 8, 30, tzinfo=UTC), "2026-02-28T08:29:00Z"),
])
def test_month_offsets_count_calendar_months(text: str, now: datetime, expected: str) -> None:
    assert rendered(text, now) == expected


def test_a_month_offset_counted_by_an_argument_uses_its_value() -> None:
    now = datetime(2026, 5, 31, tzinfo=UTC)

    assert rendered("{now-(months)mo:date}", now, months=3) == "2026-02-28"
    assert rendered("{now-(months)mo:date}", now) is ABSENT
