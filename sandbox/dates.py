"""Date formats of the two emulated APIs, input parsing, and the fixture date rebase.

Pure functions only: no clock is read here, callers pass `now` in.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

ANCHOR = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
"""The instant the fixtures were generated against; rebasing moves it to `now`."""

# Each timestamp style the fixtures use. The date part always leads, so a whole-day
# shift only has to rewrite the first ten characters and every format survives.
_DATE_SHAPES = (
    re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"),  # Retently
    re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"),  # Refiner responses
    re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z"),  # Refiner contacts/forms
    re.compile(r"\d{4}-\d{2}-\d{2}"),  # plain dates
)


def rebase_days(now: datetime, anchor: datetime = ANCHOR) -> int:
    """Whole days to add so the anchor lands on `now`, rounded down so no row moves past `now`."""
    return (now.astimezone(UTC) - anchor) // timedelta(days=1)


def is_timestamp(value: str) -> bool:
    return any(shape.fullmatch(value) for shape in _DATE_SHAPES)


def shift_value(value: str, days: int) -> str:
    shifted = date.fromisoformat(value[:10]) + timedelta(days=days)
    return shifted.isoformat() + value[10:]


def rebase(data: Any, days: int) -> Any:
    """Return `data` with every timestamp string moved by `days`, formats unchanged."""
    if days == 0:
        return data
    if isinstance(data, dict):
        return {key: rebase(item, days) for key, item in data.items()}
    if isinstance(data, list):
        return [rebase(item, days) for item in data]
    if isinstance(data, str) and is_timestamp(data):
        return shift_value(data, days)
    return data


def retently_format(moment: datetime) -> str:
    """`2024-05-02T10:21:07.512Z`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def refiner_response_format(moment: datetime) -> str:
    """`2026-05-02 21:53:33`, the style of Refiner response objects."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def refiner_object_format(moment: datetime) -> str:
    """`2026-01-12T09:14:02.000000Z`, the style of Refiner contacts and forms."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stored(value: str) -> datetime:
    """Parse any timestamp the fixtures hold (all UTC)."""
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T")).replace(
        tzinfo=UTC
    )


def parse_input(value: str, *, allow_unix: bool) -> tuple[datetime, bool]:
    """Parse a caller's date: ISO date or datetime, or UNIX seconds when allowed.

    Returns the instant and whether the input was a bare date (callers widen an end date).
    Naive inputs are read as UTC.

    Raises:
        ValueError: the value is not a date in any accepted form.
    """
    text = value.strip()
    if allow_unix and re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), tz=UTC), False
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return datetime.fromisoformat(text).replace(tzinfo=UTC), True
    if not re.fullmatch(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", text
    ):
        raise ValueError(f"not a date: {value!r}")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC), False
